package docs

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/config"
)

// placeholder stands for a map key in a configuration key path; the
// table writes it <id> or <name>.
const placeholder = "<>"

// configKeys walks config.Config's yaml tags and returns every leaf key
// path: a struct with yaml-tagged fields is descended into, a map of such
// structs or of maps too (its key a placeholder: profiles.<name>,
// vendors.<id>), and a list of such structs (written name[]); anything
// else (scalars, lists of values, secrets, a map of values, types with
// their own YAML decoding) is a leaf.
func configKeys() []string {
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch {
		case hasYAMLFields(typ):
			for i := range typ.NumField() {
				f := typ.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "" || name == "-" {
					continue
				}
				walk(join(prefix, name), f.Type)
			}
		case typ.Kind() == reflect.Map && (hasYAMLFields(elem(typ)) || elem(typ).Kind() == reflect.Map):
			walk(join(prefix, placeholder), typ.Elem())
		case typ.Kind() == reflect.Slice && hasYAMLFields(elem(typ)):
			walk(prefix+"[]", typ.Elem())
		default:
			keys = append(keys, prefix)
		}
	}
	walk("", reflect.TypeFor[config.Config]())
	return keys
}

func elem(typ reflect.Type) reflect.Type {
	typ = typ.Elem()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	return typ
}

func hasYAMLFields(typ reflect.Type) bool {
	if typ.Kind() != reflect.Struct {
		return false
	}
	for i := range typ.NumField() {
		if _, ok := typ.Field(i).Tag.Lookup("yaml"); ok {
			return true
		}
	}
	return false
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// normalize writes every <...> segment of a documented key as placeholder.
func normalize(key string) string {
	parts := strings.Split(key, ".")
	for i, p := range parts {
		if strings.HasPrefix(p, "<") && strings.HasSuffix(p, ">") {
			parts[i] = placeholder
		}
	}
	return strings.Join(parts, ".")
}

// TestDesignConfigKeys: the Configuration section's key table documents
// every key config.Config decodes, and nothing else.
//
// The table's notation: a key cell lists full paths in backticks; a name
// after the first without the first's parent is the first's sibling
// (`cache.redis.master_name`, `username` is cache.redis.username); a row
// for a block (`profiles.<name>`, a list `auth.jwt_issuers[]`, which may
// be written without its []) documents the block's keys its notes name in
// backticks (`vendor`, `discovery: true`, `{url, headers}`).
func TestDesignConfigKeys(t *testing.T) {
	t.Parallel()
	where := designDoc + ", Configuration, the key table"
	tb := tableWith(t, where, section(t, "Configuration"), "key")
	leaves := configKeys()

	documented := map[string]bool{}
	for _, row := range tb.rows {
		spans := codeSpans(row[0])
		if len(spans) == 0 {
			t.Errorf("%s: row %q names no key in backticks", where, row[0])
			continue
		}
		first := normalize(spans[0])
		parent := ""
		if i := strings.LastIndexByte(first, '.'); i >= 0 {
			parent = first[:i]
		}
		rowKeys := []string{first}
		for _, s := range spans[1:] {
			s = normalize(s)
			if parent != "" && !strings.HasPrefix(s, parent+".") {
				s = parent + "." + s
			}
			rowKeys = append(rowKeys, s)
		}
		notes := noteKeys(row[len(row)-1])
		for _, k := range rowKeys {
			documented[k] = true
			// A block's keys named in the notes; a list of blocks may be
			// written without its [].
			for _, block := range []string{k, k + "[]"} {
				for _, leaf := range leaves {
					if rel, ok := strings.CutPrefix(leaf, block+"."); ok && notes[rel] {
						documented[leaf] = true
						documented[block] = true
					}
				}
			}
		}
	}
	for _, leaf := range leaves {
		if !documented[leaf] {
			t.Errorf("%s does not document `%s` (a yaml key of config.Config): add a row, or name it in its block's notes", where, display(leaf))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(documented)) {
		known := slices.ContainsFunc(leaves, func(leaf string) bool {
			return leaf == k || strings.HasPrefix(leaf, k+".") || strings.HasPrefix(leaf, k+"[].")
		})
		if !known {
			t.Errorf("%s documents `%s`, which config.Config has no yaml key for: remove it, or fix its path", where, display(k))
		}
	}
}

// noteKeys returns the key names a notes cell gives in backticks: `name`,
// `name: value`, or a flow mapping `{name, other}`.
func noteKeys(cell string) map[string]bool {
	names := map[string]bool{}
	for _, span := range codeSpans(cell) {
		span = strings.TrimSuffix(strings.TrimPrefix(span, "{"), "}")
		for part := range strings.SplitSeq(span, ",") {
			name, _, _ := strings.Cut(part, ":")
			names[strings.TrimSpace(name)] = true
		}
	}
	return names
}

// display writes a key path as the table does, <name> for a map key.
func display(key string) string { return strings.ReplaceAll(key, placeholder, "<name>") }
