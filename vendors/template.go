package vendors

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
	pathSegment = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)
	placeholder = regexp.MustCompile(`\{([a-z_]+)\}`)
)

// ResolveURL fills a token URL template such as
// "https://{tenancy}.{domain}/auth/..." (design section 5). Placeholders are
// filled from settings first (trusted, used as they are), then from params
// (untrusted): a param value landing in the host must be a single DNS label,
// one landing in the path a single safe segment. The result must be https,
// or http on a loopback host. Params used by the template are added to used.
func ResolveURL(tmpl string, settings Settings, params map[string]string, used map[string]bool) (string, error) {
	schemeEnd := strings.Index(tmpl, "://")
	if schemeEnd < 0 {
		return "", &ConfigError{Setting: "token_url", Reason: "not an absolute URL"}
	}
	hostEnd := strings.IndexByte(tmpl[schemeEnd+3:], '/')
	if hostEnd < 0 {
		hostEnd = len(tmpl)
	} else {
		hostEnd += schemeEnd + 3
	}
	var firstErr error
	out := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := m[1 : len(m)-1]
		if v, ok := settings[name]; ok && v != "" {
			return v
		}
		v, ok := params[name]
		if !ok || v == "" {
			if firstErr == nil {
				firstErr = &ArgumentError{Field: "params." + name, Reason: "is required by this vendor's token URL"}
			}
			return m
		}
		if used != nil {
			used[name] = true
		}
		return v
	})
	if firstErr != nil {
		return "", firstErr
	}
	// Validate each param value by where its placeholder stands.
	for _, loc := range placeholder.FindAllStringSubmatchIndex(tmpl, -1) {
		name := tmpl[loc[2]:loc[3]]
		if v, ok := settings[name]; ok && v != "" {
			continue
		}
		v := params[name]
		if loc[0] < hostEnd {
			if !dnsLabel.MatchString(v) {
				return "", &ArgumentError{Field: "params." + name, Reason: fmt.Sprintf("%q is not a single DNS label ([a-z0-9-], 1 to 63 characters, no dots)", truncate(v))}
			}
		} else if !pathSegment.MatchString(v) || v == "." || v == ".." {
			return "", &ArgumentError{Field: "params." + name, Reason: fmt.Sprintf("%q is not a single URL path segment of [A-Za-z0-9._~-]", truncate(v))}
		}
	}
	if err := CheckTokenURL(out); err != nil {
		return "", err
	}
	return out, nil
}

// CheckTokenURL accepts https URLs, and http URLs only on loopback hosts:
// secrets never cross a network in clear.
func CheckTokenURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return &ConfigError{Setting: "token_url", Reason: "not an absolute URL without user info or fragment"}
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return &ConfigError{Setting: "token_url", Reason: "http:// is allowed only for loopback hosts; use https://"}
	}
	return &ConfigError{Setting: "token_url", Reason: "scheme must be https"}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
