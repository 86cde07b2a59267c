package vendors

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Body formats a token request can be sent in.
const (
	bodyForm = "form"
	bodyJSON = "json"
	bodyXML  = "xml"
)

// field is one named value of a token request body.
type field struct{ name, value string }

// fields are a request body's members in the order they are sent: the order
// of the vendor's document where it shows one, so that a request can be
// compared byte for byte with the documented example.
type fields []field

func (f fields) get(name string) string {
	for _, kv := range f {
		if kv.name == name {
			return kv.value
		}
	}
	return ""
}

// set replaces name's value or appends it.
func (f *fields) set(name, value string) {
	for i := range *f {
		if (*f)[i].name == name {
			(*f)[i].value = value
			return
		}
	}
	*f = append(*f, field{name, value})
}

// ordered returns f sorted by the position of each name in order; names not
// listed keep their relative order after the listed ones.
func (f fields) ordered(order []string) fields {
	out := slices.Clone(f)
	rank := func(name string) int {
		if i := slices.Index(order, name); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(out, func(a, b field) int { return rank(a.name) - rank(b.name) })
	return out
}

// encodeBody renders f as format. An XML body is one root element whose
// children hold the values, with the two namespace declarations .NET's
// XmlSerializer writes (Saasu's documented layout); names are identifiers
// from this package, values are escaped.
func encodeBody(format, xmlRoot string, f fields) (body []byte, contentType string, err error) {
	var b bytes.Buffer
	switch format {
	case bodyForm:
		for i, kv := range f {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(kv.name))
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(kv.value))
		}
		return b.Bytes(), "application/x-www-form-urlencoded", nil
	case bodyJSON:
		b.WriteString("{\n")
		for i, kv := range f {
			fmt.Fprintf(&b, "  %s: %s", jsonQuote(kv.name), jsonQuote(kv.value))
			if i < len(f)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString("}")
		return b.Bytes(), "application/json", nil
	case bodyXML:
		if xmlRoot == "" {
			return nil, "", fmt.Errorf("no XML layout is known for this request")
		}
		b.WriteString("<" + xmlRoot + ` xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">` + "\n")
		for _, kv := range f {
			b.WriteString("  <" + kv.name + ">")
			_ = xml.EscapeText(&b, []byte(kv.value)) // a bytes.Buffer never fails
			b.WriteString("</" + kv.name + ">\n")
		}
		b.WriteString("</" + xmlRoot + ">")
		return b.Bytes(), "application/xml", nil
	}
	return nil, "", fmt.Errorf("unknown body format %q", format)
}

// acceptFor is the Accept header for an answer to a body of format: vendors
// that negotiate (Saasu) answer XML to XML.
func acceptFor(format string) string {
	if format == bodyXML {
		return "application/xml"
	}
	return "application/json"
}

// jsonQuote quotes s as a JSON string without HTML escaping (a password
// with & is sent as &, not \u0026).
func jsonQuote(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// encodings are the forms in which a secret may appear in a request body,
// and so in a vendor's echo of it: scrub looks for each.
func encodings(secret string) []string {
	out := []string{secret}
	quoted := jsonQuote(secret)
	for _, v := range []string{url.QueryEscape(secret), quoted[1 : len(quoted)-1], xmlEscape(secret)} {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
