package controller

// OpenAPIDocument is the embedded openapi.json, for the external tests.
var OpenAPIDocument = openAPIDocument
