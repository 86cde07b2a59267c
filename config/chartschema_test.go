package config

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestChartSchemaKnowsTheKeys keeps the Helm chart's values.schema.json,
// which closes the chart's config value so that a misspelled key fails
// helm install instead of crash-looping the pods, in step with the keys
// this package accepts: a key added here must be added there.
func TestChartSchemaKnowsTheKeys(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../deploy/helm/tokenbroker/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	type node struct {
		Properties map[string]*node `json:"properties"`
		// AdditionalProperties is false, true or a schema.
		AdditionalProperties json.RawMessage `json:"additionalProperties"`
	}
	var schema node
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	cfg := schema.Properties["config"]
	if cfg == nil {
		t.Fatal("values.schema.json has no properties.config")
	}
	// profiles.<name> and clients.<name>: the schema of each map value.
	entry := func(name string) *node {
		var n node
		if m := cfg.Properties[name]; m != nil && json.Unmarshal(m.AdditionalProperties, &n) == nil {
			return &n
		}
		return nil
	}
	checks := []struct {
		where  string
		schema *node
		typ    reflect.Type
	}{
		{"config", cfg, reflect.TypeFor[Config]()},
		{"config.cache", cfg.Properties["cache"], reflect.TypeFor[Cache]()},
		{"config.service", cfg.Properties["service"], reflect.TypeFor[ServiceTuning]()},
		{"config.limits", cfg.Properties["limits"], reflect.TypeFor[Limits]()},
		{"config.access_log", cfg.Properties["access_log"], reflect.TypeFor[AccessLog]()},
		{"config.profiles.<name>", entry("profiles"), reflect.TypeFor[Profile]()},
		{"config.clients.<name>", entry("clients"), reflect.TypeFor[Client]()},
	}
	for _, c := range checks {
		if c.schema == nil {
			t.Errorf("values.schema.json has no %s", c.where)
			continue
		}
		if string(c.schema.AdditionalProperties) != "false" {
			t.Errorf("values.schema.json: %s is not closed (additionalProperties: false)", c.where)
		}
		var keys []string
		for f := range c.typ.Fields() {
			if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag != "" && tag != "-" {
				keys = append(keys, tag)
			}
		}
		var inSchema []string
		for k := range c.schema.Properties {
			inSchema = append(inSchema, k)
		}
		slices.Sort(keys)
		slices.Sort(inSchema)
		if !slices.Equal(keys, inSchema) {
			t.Errorf("values.schema.json %s has keys %v, the broker accepts %v", c.where, inSchema, keys)
		}
	}
}
