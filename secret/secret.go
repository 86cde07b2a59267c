// Package secret holds credential values so that they cannot leak by
// accident: every way Go prints, logs or marshals a value shows a redaction
// marker, and the clear text is reachable only through Reveal, at the one
// place a secret must leave the process (the vendor's token request).
package secret

import (
	"fmt"
	"log/slog"
)

// Redacted is what a Secret prints as.
const Redacted = "[REDACTED]"

// Secret is a credential value. The zero value is the empty secret.
type Secret struct {
	value string
}

// New wraps a clear-text value.
func New(value string) Secret { return Secret{value: value} }

// Reveal returns the clear text. Call it only where the value is sent to the
// party that issued it.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.value == "" }

// Equal reports whether two secrets hold the same value.
func (s Secret) Equal(o Secret) bool { return s.value == o.value }

// String implements fmt.Stringer with a redaction marker.
func (s Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer so %#v redacts too.
func (s Secret) GoString() string { return "secret.Secret{" + Redacted + "}" }

// Format implements fmt.Formatter: every verb prints the marker.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON implements json.Marshaler with the marker.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler with the marker, which also
// covers YAML and XML encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Map is a set of named secrets, such as a profile's credentials.
type Map map[string]Secret

// FromStrings wraps every value of m.
func FromStrings(m map[string]string) Map {
	out := make(Map, len(m))
	for k, v := range m {
		out[k] = New(v)
	}
	return out
}

// Get returns the clear text of name, or "" when absent.
func (m Map) Get(name string) string { return m[name].Reveal() }

// UnmarshalText implements encoding.TextUnmarshaler, so config decoders can
// fill a Secret directly and the value never exists as a plain string field.
func (s *Secret) UnmarshalText(b []byte) error {
	s.value = string(b)
	return nil
}
