package app

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/version"
)

// TestOpenAPIDocument checks what REST callers' tools read at
// /openapi.json: the build's version, the Bearer scheme, and every error
// answer the gateway gives (design.md, API and errors) as a google.rpc.Status.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	b := runOps(t, newOpsApp(t, opsConfig(t, opsSim(t), "")))
	code, body, _ := getText(t, b.http+"/openapi.json")
	if code != http.StatusOK {
		t.Fatalf("/openapi.json = %d", code)
	}
	var doc struct {
		Info struct {
			Title, Version, Description string
		}
		SecurityDefinitions map[string]struct {
			Type, In, Name string
		}
		Security []map[string][]string
		Paths    map[string]map[string]struct {
			Responses map[string]struct {
				Schema struct {
					Ref string `json:"$ref"`
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Info.Title != "tokenbroker" || doc.Info.Description == "" {
		t.Errorf("info = %+v, want the title tokenbroker and a description", doc.Info)
	}
	if want := version.Get().Version; doc.Info.Version != want {
		t.Errorf("info.version = %q, want the build's %q", doc.Info.Version, want)
	}
	if s := doc.SecurityDefinitions["bearer"]; s.Type != "apiKey" || s.In != "header" || s.Name != "Authorization" {
		t.Errorf("securityDefinitions.bearer = %+v, want the Authorization header", s)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearer"] == nil {
		t.Errorf("security = %v, want bearer on every operation", doc.Security)
	}
	operations := 0
	for path, methods := range doc.Paths {
		for method, op := range methods {
			operations++
			for _, status := range []string{"400", "401", "403", "404", "429", "503", "default"} {
				if r, ok := op.Responses[status]; !ok || r.Schema.Ref != "#/definitions/rpcStatus" {
					t.Errorf("%s %s: response %s = %+v, want a google.rpc.Status", method, path, status, r)
				}
			}
			if _, ok := op.Responses["200"]; !ok {
				t.Errorf("%s %s has no 200 response", method, path)
			}
		}
	}
	if operations < 3 {
		t.Errorf("%d operations in %v, want at least GetToken, InvalidateToken, ListVendors", operations, slices.Sorted(maps.Keys(doc.Paths)))
	}
}
