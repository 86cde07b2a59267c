package server

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tokenbroker/tokenbroker/gen/openapi"
)

func TestStampOpenAPIVersion(t *testing.T) {
	t.Parallel()
	var generated, stamped map[string]any
	if err := json.Unmarshal(openapi.JSON, &generated); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(stampOpenAPIVersion(openapi.JSON, "v1.2.3"), &stamped); err != nil {
		t.Fatal(err)
	}
	info := stamped["info"].(map[string]any)
	if info["version"] != "v1.2.3" {
		t.Errorf("info.version = %v, want the build's v1.2.3", info["version"])
	}
	if info["title"] != "tokenbroker" {
		t.Errorf("info.title = %v, want tokenbroker", info["title"])
	}
	// Nothing else changes.
	generated["info"].(map[string]any)["version"] = "v1.2.3"
	if !reflect.DeepEqual(generated, stamped) {
		t.Error("stamping the version changed more than info.version")
	}
	if got := stampOpenAPIVersion([]byte("not json"), "v1"); string(got) != "not json" {
		t.Errorf("an unreadable document became %q", got)
	}
}
