package server

import (
	"encoding/json"
	"sync"

	"github.com/tokenbroker/tokenbroker/gen/openapi"
	"github.com/tokenbroker/tokenbroker/internal/version"
)

// openAPIDocument is what GET /openapi.json serves: gen/openapi's document
// with info.version set to the running build's version (docs/design.md,
// Operations). The generated file carries a placeholder: the proto knows
// no release, and a regenerated file must not change with each build.
var openAPIDocument = sync.OnceValue(func() []byte {
	return stampOpenAPIVersion(openapi.JSON, version.Get().Version)
})

// stampOpenAPIVersion returns doc with info.version set to v; everything
// else is kept as generated. A document it cannot read is returned as it
// is (make generate-check keeps it readable).
func stampOpenAPIVersion(doc []byte, v string) []byte {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return doc
	}
	var info map[string]json.RawMessage
	if err := json.Unmarshal(top["info"], &info); err != nil || info == nil {
		return doc
	}
	stamped, err := json.Marshal(v)
	if err != nil {
		return doc
	}
	info["version"] = stamped
	if top["info"], err = json.Marshal(info); err != nil {
		return doc
	}
	out, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return doc
	}
	return out
}
