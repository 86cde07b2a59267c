package vendors

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"mime"
	"net/url"
	"strings"
)

// answerFormat says how to read a token endpoint's answer.
type answerFormat int

const (
	// formatOAuth reads RFC 6749 members from JSON, XML or form answers,
	// chosen by Content-Type (text/plain reads as form, as
	// golang.org/x/oauth2 does) or, without one, by the first byte.
	formatOAuth answerFormat = iota
	// formatBareToken reads a 2xx text/plain body as the token itself
	// (HotDocs Advance); error answers are still read as formatOAuth.
	formatBareToken
)

// answer holds the RFC 6749 section 5.1 and 5.2 members of an answer.
type answer struct {
	AccessToken      string
	TokenType        string
	RefreshToken     string
	Scope            string
	ExpiresIn        json.RawMessage // JSON text of the member: number or string
	Error            string
	ErrorDescription string
	ErrorURI         string
}

// errUnreadable marks an answer body that is none of the known formats.
var errUnreadable = errors.New("answer is not JSON, XML or form-encoded")

// parseAnswer reads body according to its Content-Type, or its first
// character when the type says nothing reliable.
func parseAnswer(contentType string, body []byte) (*answer, error) {
	media, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(body)
	switch {
	case media == "application/json" || media == "text/json" || strings.HasSuffix(media, "+json"):
		return parseJSONAnswer(trimmed)
	case media == "application/xml" || media == "text/xml" || strings.HasSuffix(media, "+xml"):
		return parseXMLAnswer(trimmed)
	case media == "application/x-www-form-urlencoded":
		return parseFormAnswer(trimmed)
	}
	// text/plain (what Go's and many other servers send when a handler
	// sets no type), another type or none: the body says which it is. A
	// form body never starts with { or <.
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		return parseJSONAnswer(trimmed)
	case len(trimmed) > 0 && trimmed[0] == '<':
		return parseXMLAnswer(trimmed)
	}
	return parseFormAnswer(trimmed)
}

// parseJSONAnswer reads a JSON object. Trailing commas before a closing
// brace or bracket are tolerated: Bright Pattern's documented answer has one.
func parseJSONAnswer(body []byte) (*answer, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(stripTrailingCommas(body), &members); err != nil {
		return nil, errUnreadable
	}
	a := &answer{
		AccessToken:      jsonString(members["access_token"]),
		TokenType:        jsonString(members["token_type"]),
		RefreshToken:     jsonString(members["refresh_token"]),
		Scope:            jsonString(members["scope"]),
		Error:            jsonString(members["error"]),
		ErrorDescription: jsonString(members["error_description"]),
		ErrorURI:         jsonString(members["error_uri"]),
		ExpiresIn:        members["expires_in"],
	}
	return a, nil
}

// jsonString returns a JSON string member's value, "" for anything else.
func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// stripTrailingCommas removes commas that only whitespace separates from a
// closing } or ], outside strings.
func stripTrailingCommas(in []byte) []byte {
	out := make([]byte, 0, len(in))
	inString, escaped := false, false
	for i := 0; i < len(in); i++ {
		c := in[i]
		if inString {
			out = append(out, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		if c == '"' {
			inString = true
		}
		if c == ',' {
			j := i + 1
			for j < len(in) && (in[j] == ' ' || in[j] == '\t' || in[j] == '\n' || in[j] == '\r') {
				j++
			}
			if j < len(in) && (in[j] == '}' || in[j] == ']') {
				continue
			}
		}
		out = append(out, c)
	}
	return out
}

// parseXMLAnswer reads the child elements of the root element by local name,
// as Saasu's OAuthAccessTokenGrant carries them.
func parseXMLAnswer(body []byte) (*answer, error) {
	fields, err := xmlFields(body)
	if err != nil {
		return nil, errUnreadable
	}
	a := &answer{
		AccessToken:      fields["access_token"],
		TokenType:        fields["token_type"],
		RefreshToken:     fields["refresh_token"],
		Scope:            fields["scope"],
		Error:            fields["error"],
		ErrorDescription: fields["error_description"],
		ErrorURI:         fields["error_uri"],
	}
	if v, ok := fields["expires_in"]; ok {
		a.ExpiresIn, _ = json.Marshal(v)
	}
	return a, nil
}

// xmlFields maps the root's direct children's local names to their text.
func xmlFields(body []byte) (map[string]string, error) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = true
	fields := map[string]string{}
	depth := 0
	var current string
	var text strings.Builder
	sawRoot := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !sawRoot || depth != 0 {
				return nil, errUnreadable
			}
			return fields, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth > 16 {
				return nil, errUnreadable
			}
			if depth == 1 {
				if sawRoot {
					return nil, errUnreadable
				}
				sawRoot = true
			}
			if depth == 2 {
				current = t.Name.Local
				text.Reset()
			}
		case xml.CharData:
			if depth == 2 && text.Len() < 1<<20 {
				text.Write(t)
			}
		case xml.EndElement:
			if depth == 2 {
				fields[current] = strings.TrimSpace(text.String())
			}
			depth--
		}
	}
}

// parseFormAnswer reads an application/x-www-form-urlencoded answer.
func parseFormAnswer(body []byte) (*answer, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errUnreadable
	}
	a := &answer{
		AccessToken:      vals.Get("access_token"),
		TokenType:        vals.Get("token_type"),
		RefreshToken:     vals.Get("refresh_token"),
		Scope:            vals.Get("scope"),
		Error:            vals.Get("error"),
		ErrorDescription: vals.Get("error_description"),
		ErrorURI:         vals.Get("error_uri"),
	}
	if vals.Has("expires_in") {
		a.ExpiresIn, _ = json.Marshal(vals.Get("expires_in"))
	}
	return a, nil
}

// normalizeTokenType applies docs/design.md, Token semantics: bearer in any case becomes
// Bearer, missing becomes Bearer, anything else passes through.
func normalizeTokenType(t string) string {
	if t == "" || strings.EqualFold(t, "bearer") {
		return "Bearer"
	}
	return t
}
