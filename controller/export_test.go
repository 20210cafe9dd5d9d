package controller

// OpenAPIDocument is the embedded openapi.json, for the external tests.
var OpenAPIDocument = openAPIDocument

// CDRCSVHeader is the header of the CDR CSV export a customer
// (operator: false) or the operator sees.
func CDRCSVHeader(operator bool) []string { return cdrCSVView(cdrCSVColumns, operator) }

// CDRCSVColumns are every column of the CDR CSV export.
var CDRCSVColumns = cdrCSVColumns

// AppendBody appends what r holds to b without allocating once b is
// large enough (the benchmarks read answers with it).
var AppendBody = appendBody
