package sealed

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/tokenbroker/tokenbroker/store"
)

// wireEntry is the sealed JSON of an Entry; times are Unix nanoseconds.
type wireEntry struct {
	AccessToken  string `json:"a"`
	TokenType    string `json:"t,omitempty"`
	Scope        string `json:"s,omitempty"`
	RefreshToken string `json:"r,omitempty"`
	IssuedAt     int64  `json:"i"`
	ExpiresAt    int64  `json:"e"`
	FetchedAt    int64  `json:"f"`
	Fence        uint64 `json:"g,omitempty"`
	// Rejected: a negative cache entry (no token).
	Rejected *store.Rejection `json:"x,omitempty"`
}

// decodeWire reads the JSON of a wireEntry as json.Unmarshal does, and
// returns the SHA-256 of its access token (Digest's) with it. Every value
// is opened on every read of the shared level, and reflection made
// json.Unmarshal most of an open's cost, so the shape json.Marshal writes
// for a token (one-letter keys, once each; strings without escapes; whole
// numbers) is read directly, and anything else (a negative cache entry, an
// escaped character, a value this code did not write) goes to
// json.Unmarshal. FuzzDecodeWire holds the two to the same answers. The
// direct path hashes the token where it lies in data, not in a copy.
func decodeWire(data []byte) (w wireEntry, tokenSum [sha256.Size]byte, err error) {
	if token, ok := decodeWireFast(data, &w); ok {
		return w, sha256.Sum256(token), nil
	}
	var u wireEntry
	if err := json.Unmarshal(data, &u); err != nil {
		return wireEntry{}, tokenSum, err
	}
	return u, sha256.Sum256([]byte(u.AccessToken)), nil
}

// decodeWireFast decodes data into w when it is in the shape described
// at decodeWire, and reports whether it was (w is then complete; else
// its contents are undefined); token is the access token's bytes in data.
func decodeWireFast(data []byte, w *wireEntry) (token []byte, ok bool) {
	*w = wireEntry{}
	if len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' {
		return nil, false
	}
	p := wireParser{data: data[1 : len(data)-1]}
	// The keys the fast path reads, in wireFields' order. The strings
	// are read as spans of data and copied out together at the end: one
	// allocation for all of them.
	strs := [...]*string{&w.AccessToken, &w.TokenType, &w.Scope, &w.RefreshToken}
	var spans [len(strs)][]byte
	ints := [...]*int64{&w.IssuedAt, &w.ExpiresAt, &w.FetchedAt}
	var seen [len(wireFields)]bool
	for first := true; len(p.data) > 0 || first; first = false {
		if !first && !p.byte(',') {
			return nil, false
		}
		if len(p.data) < 4 || p.data[0] != '"' || p.data[2] != '"' || p.data[3] != ':' {
			return nil, false
		}
		field := strings.IndexByte(wireFields, p.data[1])
		p.data = p.data[4:]
		if field < 0 || seen[field] {
			return nil, false
		}
		seen[field] = true
		ok := false
		switch {
		case field < len(strs):
			spans[field], ok = p.string()
		case field < len(strs)+len(ints):
			*ints[field-len(strs)], ok = p.int()
		default:
			w.Fence, ok = p.uint()
		}
		if !ok {
			return nil, false
		}
	}
	n := 0
	for _, b := range spans {
		n += len(b)
	}
	var all strings.Builder
	all.Grow(n)
	for _, b := range spans {
		all.Write(b)
	}
	rest := all.String()
	for i, b := range spans {
		*strs[i], rest = rest[:len(b)], rest[len(b):]
	}
	return spans[0], true
}

// wireFields are the keys of wireEntry the fast path reads: its strings,
// its times, its fence (not the negative cache's "x").
const wireFields = "atsriefg"

// wireParser consumes the inside of a wireEntry's JSON object.
type wireParser struct{ data []byte }

func (p *wireParser) byte(c byte) bool {
	if len(p.data) == 0 || p.data[0] != c {
		return false
	}
	p.data = p.data[1:]
	return true
}

// string reads a JSON string that needs no unescaping (no backslash, no
// control character, valid UTF-8: json.Unmarshal would replace invalid
// bytes) and returns its bytes, a part of p's data.
func (p *wireParser) string() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	ascii := true
	for i, c := range p.data {
		switch {
		case c == '"':
			s := p.data[:i]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			p.data = p.data[i+1:]
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// uint reads a JSON whole number without sign, exponent or fraction that
// fits in a uint64.
func (p *wireParser) uint() (uint64, bool) {
	n, i := uint64(0), 0
	for ; i < len(p.data) && '0' <= p.data[i] && p.data[i] <= '9'; i++ {
		d := uint64(p.data[i] - '0')
		if i == 19 {
			// 20 digits may still fit; json.Unmarshal decides.
			return 0, false
		}
		n = n*10 + d
	}
	if i == 0 || i > 1 && p.data[0] == '0' {
		return 0, false
	}
	if i < len(p.data) && (p.data[i] == '.' || p.data[i] == 'e' || p.data[i] == 'E') {
		return 0, false
	}
	p.data = p.data[i:]
	return n, true
}

// int reads a JSON whole number that fits in an int64.
func (p *wireParser) int() (int64, bool) {
	neg := p.byte('-')
	n, ok := p.uint()
	switch {
	case !ok:
		return 0, false
	case neg && n <= 1<<63:
		return int64(-n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}
