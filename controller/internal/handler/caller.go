package handler

import (
	"callbridge"

	"github.com/gin-gonic/gin"
)

// adminKey marks, in the gin context, a request that carried the
// operator's admin token.
const adminKey = "callbridge.admin"

// AdminOwner names the admin as the owner of what it runs (an import
// slot), as an account's ID names the account.
const AdminOwner = adminKey

// MarkAdmin records that the request carried the operator's admin token.
func MarkAdmin(c *gin.Context) { c.Set(adminKey, true) }

// IsAdmin reports whether the request carried the operator's admin token.
func IsAdmin(c *gin.Context) bool { return c.GetBool(adminKey) }

// Account returns the authenticated account of the request; routes under
// the API-key authentication always have one.
func Account(c *gin.Context) *callbridge.Account {
	return callbridge.AccountFromContext(c.Request.Context())
}
