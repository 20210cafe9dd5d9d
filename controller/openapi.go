package controller

import (
	_ "embed" // openapi.json
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPIDocument is the OpenAPI 3 description of every route, kept in
// the repository next to routes.go; TestOpenAPIMatchesRoutes fails when
// the two disagree.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3 document of the HTTP API, as served at
// GET /openapi.json. The slice is a copy.
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }

// openAPI serves the document. It needs no credential: it describes the
// API, not any account's data.
func openAPI() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=300")
		c.Data(http.StatusOK, "application/json; charset=utf-8", openAPIDocument)
	}
}
