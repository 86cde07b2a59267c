package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A Go file holding a structured-merge-diff schema as client-go's does:
// one kind (apps/v1 Widget) with a named, a recursive and an untyped type.
const source = "package internal\n\nvar schemaYAML = typed.YAMLObject(`types:\n" + `- name: io.k8s.api.apps.v1.Widget
  map:
    fields:
    - name: apiVersion
      type:
        scalar: string
    - name: kind
      type:
        scalar: string
    - name: metadata
      type:
        map:
          elementType:
            scalar: string
    - name: spec
      type:
        namedType: io.k8s.api.apps.v1.WidgetSpec
- name: io.k8s.api.apps.v1.WidgetSpec
  map:
    fields:
    - name: replicas
      type:
        scalar: numeric
    - name: ports
      type:
        list:
          elementType:
            namedType: io.k8s.apimachinery.pkg.util.intstr.IntOrString
    - name: child
      type:
        namedType: io.k8s.api.apps.v1.WidgetSpec
- name: io.k8s.apimachinery.pkg.util.intstr.IntOrString
  scalar: untyped
` + "`)\n"

func TestRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "internal.go")
	if err := os.WriteFile(in, []byte(source), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "schemas")
	if err := run(in, out); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 || entries[0].Name() != "widget-apps-v1.json" {
		t.Fatalf("wrote %v, want only widget-apps-v1.json (WidgetSpec is no kind)", entries)
	}
	raw, err := os.ReadFile(filepath.Join(out, "widget-apps-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	spec := got["properties"].(map[string]any)["spec"].(map[string]any)
	want := map[string]any{
		"type":                 []any{"object", "null"},
		"additionalProperties": false,
		"properties": map[string]any{
			"replicas": map[string]any{"type": []any{"number", "null"}},
			"ports":    map[string]any{"type": []any{"array", "null"}, "items": map[string]any{}},
			// The recursive field is open rather than infinite.
			"child": map[string]any{},
		},
	}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("spec schema = %v, want %v", spec, want)
	}
	if got["additionalProperties"] != false {
		t.Errorf("the kind's schema is not closed: %v", got)
	}
}

func TestRunRejectsOtherFiles(t *testing.T) {
	t.Parallel()
	in := filepath.Join(t.TempDir(), "x.go")
	if err := os.WriteFile(in, []byte("package x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(in, t.TempDir()); err == nil {
		t.Fatal("run on a file without a schema succeeded")
	}
}
