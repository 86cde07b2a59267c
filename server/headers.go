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
	// names are the metadata keys, for a key in any other form
	// (compared without regard to case, as before).
	names []string
}

func newHeaderMatcher(headers []string) *headerMatcher {
	m := &headerMatcher{byCanonical: make(map[string]string, len(headers))}
	for _, h := range headers {
		name := strings.ToLower(h)
		if _, dup := m.byCanonical[textproto.CanonicalMIMEHeaderKey(h)]; dup {
			continue
		}
		m.byCanonical[textproto.CanonicalMIMEHeaderKey(h)] = name
		m.names = append(m.names, name)
	}
	return m
}

// match is runtime.HeaderMatcherFunc.
func (m *headerMatcher) match(key string) (string, bool) {
	if name, ok := m.byCanonical[key]; ok {
		return name, true
	}
	for _, name := range m.names {
		if strings.EqualFold(key, name) {
			return name, true
		}
	}
	return "", false
}
