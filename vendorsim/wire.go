package vendorsim

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// jsonType is the Content-Type of every JSON answer.
const jsonType = "application/json; charset=utf-8"

// tokenError is a rejection of a token request; each vendor renders it in
// its own style (plain text, JSON in some layout, XML).
type tokenError struct {
	status      int
	code        string // RFC 6749 section 5.2 error code
	description string
}

func invalidRequest(format string, args ...any) *tokenError {
	return &tokenError{http.StatusBadRequest, "invalid_request", fmt.Sprintf(format, args...)}
}

// randomToken returns 256 random bits, base64url-encoded without padding.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// mediaType returns the request's media type without parameters, or "" when
// the header is malformed or names a charset other than UTF-8 (every vendor
// here speaks UTF-8 only).
func mediaType(r *http.Request) string {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return ""
	}
	return mt
}

// readBody returns the body the endpoint has already read and bounded.
func readBody(r *http.Request) ([]byte, *tokenError) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, invalidRequest("cannot read the request body")
	}
	return body, nil
}

// readForm reads an application/x-www-form-urlencoded body; see parseForm.
func readForm(r *http.Request, fields []string, ignoreUnknown bool) (map[string]string, *tokenError) {
	if mediaType(r) != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded")
	}
	body, e := readBody(r)
	if e != nil {
		return nil, e
	}
	vals, err := parseForm(body, fields, ignoreUnknown)
	if err != nil {
		return nil, invalidRequest("%v", err)
	}
	return vals, nil
}

// parseForm decodes a form body holding fields, each at most once (RFC 6749
// section 3.2). Other parameters are an error unless ignoreUnknown is set (as
// RFC 6749 section 3.2 asks of a generic server). An empty value counts as
// absent, as the RFC says.
func parseForm(body []byte, fields []string, ignoreUnknown bool) (map[string]string, error) {
	q, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errors.New("body is not valid application/x-www-form-urlencoded")
	}
	vals := make(map[string]string, len(fields))
	for name, vs := range q {
		if !slices.Contains(fields, name) {
			if ignoreUnknown {
				continue
			}
			return nil, fmt.Errorf("unknown parameter %q", name)
		}
		if len(vs) > 1 {
			return nil, fmt.Errorf("parameter %q included more than once", name)
		}
		vals[name] = vs[0]
	}
	return vals, nil
}

// decodeJSONObject decodes a body that is one JSON object whose members
// named in fields are strings, each at most once (encoding/json would
// silently keep the last of duplicated members). Other members are an error
// unless ignoreUnknown is set. Names match case-sensitively.
func decodeJSONObject(body []byte, fields []string, ignoreUnknown bool) (map[string]string, error) {
	errMalformed := errors.New("body is not a well-formed JSON object")
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errMalformed
	}
	vals := make(map[string]string, len(fields))
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		name, isName := tok.(string)
		var raw json.RawMessage
		if err != nil || !isName || dec.Decode(&raw) != nil {
			return nil, errMalformed
		}
		if seen[name] {
			return nil, fmt.Errorf("member %q appears more than once", name)
		}
		seen[name] = true
		if !slices.Contains(fields, name) {
			if ignoreUnknown {
				continue
			}
			return nil, fmt.Errorf("unknown member %q", name)
		}
		var v string
		if raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
			return nil, fmt.Errorf("member %q must be a string", name)
		}
		vals[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errMalformed
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return vals, nil
}

// decodeXMLElement decodes a body that is one element named root (no
// namespace, attributes limited to the xmlns:xsd and xmlns:xsi declarations
// .NET's XmlSerializer writes) whose children are text-only elements named
// in fields, each at most once. DTDs are refused.
func decodeXMLElement(body []byte, root string, fields []string) (map[string]string, error) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	vals := make(map[string]string, len(fields))
	var (
		depth    int // 0 outside root, 1 in root, 2 in a field
		field    string
		text     strings.Builder
		seenRoot bool
	)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errors.New("body is not well-formed XML")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch depth {
			case 0:
				if seenRoot || t.Name.Space != "" || t.Name.Local != root {
					return nil, fmt.Errorf("the body must be one <%s> element", root)
				}
				for _, a := range t.Attr {
					if a.Name.Space != "xmlns" || (a.Name.Local != "xsd" && a.Name.Local != "xsi") {
						return nil, fmt.Errorf("unexpected attribute on <%s>", root)
					}
				}
				seenRoot = true
			case 1:
				name := t.Name.Local
				if t.Name.Space != "" || !slices.Contains(fields, name) || len(t.Attr) > 0 {
					return nil, fmt.Errorf("unknown element <%s>", name)
				}
				if _, dup := vals[name]; dup {
					return nil, fmt.Errorf("element <%s> appears more than once", name)
				}
				field = name
				text.Reset()
			default:
				return nil, fmt.Errorf("element <%s> must hold text only", field)
			}
			depth++
		case xml.EndElement:
			if depth--; depth == 1 {
				vals[field] = text.String()
			}
		case xml.CharData:
			if depth == 2 {
				text.Write(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("unexpected text outside the elements")
			}
		case xml.Directive:
			return nil, errors.New("DTDs are not accepted")
		}
	}
	if !seenRoot {
		return nil, fmt.Errorf("the body must be one <%s> element", root)
	}
	return vals, nil
}

// requireFields rejects a request lacking one of names (or sending it empty).
func requireFields(vals map[string]string, names ...string) *tokenError {
	for _, name := range names {
		if vals[name] == "" {
			return invalidRequest("missing parameter %q", name)
		}
	}
	return nil
}

// writeBody writes a complete answer.
func writeBody(w http.ResponseWriter, status int, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// rfcErrorJSON is an RFC 6749 section 5.2 error object, compact.
func rfcErrorJSON(e *tokenError) string {
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.code, e.description})
	return string(b)
}

// writeRFCError renders e as RFC 6749 section 5.2 JSON.
func writeRFCError(w http.ResponseWriter, _ *http.Request, e *tokenError) {
	writeBody(w, e.status, jsonType, rfcErrorJSON(e))
}
