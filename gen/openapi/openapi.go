// Package openapi embeds the OpenAPI v2 document that protoc-gen-openapiv2
// generates next to this file, so the server can serve it.
package openapi

import _ "embed"

// JSON is the OpenAPI v2 document of the TokenService REST facade.
//
//go:embed tokenbroker.swagger.json
var JSON []byte
