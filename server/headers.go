package server

import (
	"net/textproto"
	"strings"
)

// headerMatcher is the gateway's incoming header matcher: the HTTP
// headers in Options.ForwardHeaders become metadata under their lower-case
// names, and no other header does. The gateway asks it about every header
// of every request, with the key in canonical form (it canonicalises
// before asking), so an answer must cost no allocation: lower-casing each
// key to look it up cost one for every header with a capital letter, that
// is nearly all of them.
type headerMatcher struct {
	// byCanonical maps a forwarded header's canonical key to its
	// metadata key: the lookup for what the gateway asks.
	byCanonical map[string]string
	// names are the metadata keys, for a key in any other form: it
	// matches the name its lower-case form equals, as before.
	names []string
}

func newHeaderMatcher(headers []string) *headerMatcher {
	m := &headerMatcher{byCanonical: make(map[string]string, len(headers))}
	for _, h := range headers {
		canonical := textproto.CanonicalMIMEHeaderKey(h)
		if _, dup := m.byCanonical[canonical]; dup {
			continue
		}
		name := strings.ToLower(h)
		m.byCanonical[canonical] = name
		m.names = append(m.names, name)
	}
	return m
}

// match is runtime.HeaderMatcherFunc.
func (m *headerMatcher) match(key string) (string, bool) {
	if name, ok := m.byCanonical[key]; ok {
		return name, true
	}
	lower := key
	for i := 0; i < len(key); i++ {
		if key[i] >= 0x80 {
			// strings.ToLower's own rules, not Unicode case folding
			// (which differs for a few letters): a key that is not
			// ASCII never comes from net/http, so this may allocate.
			lower = strings.ToLower(key)
			break
		}
	}
	for _, name := range m.names {
		if lowerEqual(lower, name) {
			return name, true
		}
	}
	return "", false
}

// lowerEqual reports whether s with ASCII letters lower-cased equals
// name, which is lower-case.
func lowerEqual(s, name string) bool {
	if len(s) != len(name) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}
