// Command kubeschemas writes one standalone, strict JSON Schema per
// Kubernetes kind, named as kubeconform's -schema-location template
// '{{ .ResourceKind }}{{ .KindSuffix }}.json' reads them
// (deployment-apps-v1.json, service-v1.json), so that make deploy-check
// validates the chart's renders offline (docs/ci.md) instead of
// downloading schemas.
//
//	go run ./cmd/kubeschemas -o DIR $(go list -m -f '{{.Dir}}' k8s.io/client-go)/applyconfigurations/internal/internal.go
//
// The source is the schema of every built-in type that k8s.io/client-go
// generates from the Kubernetes OpenAPI document for server-side apply
// (structured-merge-diff's YAML, in applyconfigurations/internal): it
// follows the API version client-go is built for, where the OpenAPI
// documents shipped as test data in the k8s.io modules lag years behind.
// Standalone: every named type is inlined. Strict: an object with fields
// admits no other key. It says nothing of which fields are required (the
// deploy module's tests decode every object strictly into its k8s.io/api
// type, and the API server checks the rest); a field may be null, and an
// untyped value (int-or-string, quantity) anything.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	out := flag.String("o", "", "directory to write the schemas to")
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: kubeschemas -o DIR .../k8s.io/client-go/applyconfigurations/internal/internal.go")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *out); err != nil {
		fmt.Fprintln(os.Stderr, "kubeschemas:", err)
		os.Exit(1)
	}
}

// smdType is one type of the structured-merge-diff schema.
type smdType struct {
	Name string `json:"name"`
	smdRef
}

// smdRef is a type or a reference to one.
type smdRef struct {
	NamedType string `json:"namedType"`
	Scalar    string `json:"scalar"`
	List      *struct {
		ElementType smdRef `json:"elementType"`
	} `json:"list"`
	Map *struct {
		Fields []struct {
			Name string `json:"name"`
			Type smdRef `json:"type"`
		} `json:"fields"`
		ElementType *smdRef `json:"elementType"`
	} `json:"map"`
}

func run(in, out string) error {
	src, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	_, rest, ok := strings.Cut(string(src), "typed.YAMLObject(`")
	body, _, ok2 := strings.Cut(rest, "`)")
	if !ok || !ok2 {
		return errors.New(in + ": no typed.YAMLObject(`...`) schema")
	}
	var schema struct {
		Types []smdType `json:"types"`
	}
	if err := yaml.Unmarshal([]byte(body), &schema); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	types := map[string]smdRef{}
	for _, t := range schema.Types {
		types[t.Name] = t.smdRef
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	written := 0
	for _, t := range schema.Types {
		kind, suffix, ok := kindOf(t)
		if !ok {
			continue
		}
		s := convert(t.smdRef, types, map[string]bool{t.Name: true})
		s["$schema"] = "http://json-schema.org/schema#"
		data, err := json.Marshal(s)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, strings.ToLower(kind)+suffix+".json"), data, 0o644); err != nil {
			return err
		}
		written++
	}
	if written == 0 {
		return errors.New(in + ": no kind found")
	}
	return nil
}

// kindOf names a top-level kind: io.k8s.api.<group>.<version>.<Kind> with
// apiVersion, kind and metadata fields. The suffix is kubeconform's
// KindSuffix: -<first label of the group>-<version>, or -<version> for
// the core group.
func kindOf(t smdType) (kind, suffix string, ok bool) {
	parts := strings.Split(t.Name, ".")
	if len(parts) != 6 || !strings.HasPrefix(t.Name, "io.k8s.api.") || t.Map == nil {
		return "", "", false
	}
	has := map[string]bool{}
	for _, f := range t.Map.Fields {
		has[f.Name] = true
	}
	if !has["apiVersion"] || !has["kind"] || !has["metadata"] {
		return "", "", false
	}
	group, version := parts[3], parts[4]
	if group == "core" {
		return parts[5], "-" + version, true
	}
	return parts[5], "-" + group + "-" + version, true
}

// convert returns the JSON Schema of r, named types inlined (a type being
// inlined higher up, a recursive one, becomes an open schema).
func convert(r smdRef, types map[string]smdRef, seen map[string]bool) map[string]any {
	if r.NamedType != "" {
		t, ok := types[r.NamedType]
		if !ok || seen[r.NamedType] {
			return map[string]any{}
		}
		seen[r.NamedType] = true
		defer delete(seen, r.NamedType)
		return convert(t, types, seen)
	}
	switch r.Scalar {
	case "string":
		return map[string]any{"type": []any{"string", "null"}}
	case "numeric":
		return map[string]any{"type": []any{"number", "null"}}
	case "boolean":
		return map[string]any{"type": []any{"boolean", "null"}}
	case "untyped":
		return map[string]any{}
	}
	switch {
	case r.List != nil:
		return map[string]any{"type": []any{"array", "null"}, "items": convert(r.List.ElementType, types, seen)}
	case r.Map != nil && len(r.Map.Fields) > 0:
		props := map[string]any{}
		for _, f := range r.Map.Fields {
			props[f.Name] = convert(f.Type, types, seen)
		}
		return map[string]any{"type": []any{"object", "null"}, "properties": props, "additionalProperties": false}
	case r.Map != nil && r.Map.ElementType != nil:
		return map[string]any{"type": []any{"object", "null"}, "additionalProperties": convert(*r.Map.ElementType, types, seen)}
	case r.Map != nil:
		return map[string]any{"type": []any{"object", "null"}}
	}
	return map[string]any{}
}
