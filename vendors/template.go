package vendors

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
	pathSegment = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)
	placeholder = regexp.MustCompile(`\{([a-z_]+)\}`)
	// hostSetting is what a trusted setting may put in a host: host name
	// characters and an optional port.
	hostSetting = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$`)
)

// resolveTarget resolves the URL template held by the setting key (token_url,
// tenant_token_url, refresh_url) for a vendor. Every placeholder must be a
// setting or one of the vendor's params: an operator's typo is a
// ConfigError, not a param callers could then fill.
func resolveTarget(info Info, key string, set Settings, params map[string]string, used map[string]bool) (string, error) {
	tmpl := set[key]
	if tmpl == "" {
		return "", &ConfigError{Setting: key, Reason: "is required"}
	}
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		if set[m[1]] == "" && !slices.Contains(info.Params, m[1]) {
			return "", &ConfigError{Setting: key, Reason: fmt.Sprintf("placeholder {%s} is neither a setting nor a parameter of vendor %s", m[1], info.ID)}
		}
	}
	target, err := ResolveURL(tmpl, set, params, used)
	if ce, ok := err.(*ConfigError); ok && ce.Setting == "token_url" {
		return "", &ConfigError{Setting: key, Reason: ce.Reason}
	}
	return target, err
}

// ResolveURL fills a token URL template such as
// "https://{tenancy}.{domain}/auth/..." (docs/design.md, Vendors). Placeholders are
// filled from settings first (trusted, used as they are), then from params
// (untrusted): a param value landing in the host must be a single DNS label,
// one landing in the path a single safe segment. The result must be https,
// or http on a loopback host. Params used by the template are added to used.
func ResolveURL(tmpl string, settings Settings, params map[string]string, used map[string]bool) (string, error) {
	hostEnd, err := templateHostEnd(tmpl)
	if err != nil {
		return "", err
	}
	out, err := fillPlaceholders(tmpl, settings, params, used)
	if err != nil {
		return "", err
	}
	if err := checkPlaceholderValues(tmpl, hostEnd, settings, params); err != nil {
		return "", err
	}
	if err := CheckTokenURL(out); err != nil {
		return "", err
	}
	return out, nil
}

// templateHostEnd is where the host of an absolute URL template ends: the
// first "/" after the scheme, else the template's end.
func templateHostEnd(tmpl string) (int, error) {
	schemeEnd := strings.Index(tmpl, "://")
	if schemeEnd < 0 {
		return 0, &ConfigError{Setting: "token_url", Reason: "not an absolute URL"}
	}
	hostEnd := strings.IndexByte(tmpl[schemeEnd+3:], '/')
	if hostEnd < 0 {
		return len(tmpl), nil
	}
	return hostEnd + schemeEnd + 3, nil
}

// fillPlaceholders replaces each placeholder with its setting, else its
// param (marked in used); a placeholder with neither is an error naming
// the first such param.
func fillPlaceholders(tmpl string, settings Settings, params map[string]string, used map[string]bool) (string, error) {
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
	return out, nil
}

// checkPlaceholderValues validates each value by where its placeholder
// stands (before hostEnd: in the host). Settings are trusted but must
// still fit their place (a typo must not redirect the request); a param
// in the host must be one DNS label, in the path one safe segment.
func checkPlaceholderValues(tmpl string, hostEnd int, settings Settings, params map[string]string) error {
	for _, loc := range placeholder.FindAllStringSubmatchIndex(tmpl, -1) {
		name := tmpl[loc[2]:loc[3]]
		if v, ok := settings[name]; ok && v != "" {
			if (loc[0] < hostEnd && !hostSetting.MatchString(v)) || (loc[0] >= hostEnd && (!pathSegment.MatchString(v) || v == "." || v == "..")) {
				return &ConfigError{Setting: name, Reason: fmt.Sprintf("%q does not fit its place in the token URL (a host name, or one path segment)", truncate(v))}
			}
			continue
		}
		v := params[name]
		if loc[0] < hostEnd {
			if !dnsLabel.MatchString(v) {
				return &ArgumentError{Field: "params." + name, Reason: fmt.Sprintf("%q is not a single DNS label ([a-z0-9-], 1 to 63 characters, no dots)", truncate(v))}
			}
		} else if !pathSegment.MatchString(v) || v == "." || v == ".." {
			return &ArgumentError{Field: "params." + name, Reason: fmt.Sprintf("%q is not a single URL path segment of [A-Za-z0-9._~-]", truncate(v))}
		}
	}
	return nil
}

// checkLabelParams rejects a value of the named params that is not a single
// DNS label, wherever the token URL places it: a tenancy names a host even
// when an operator's URL (a proxy, the simulator) carries it in the path,
// so the same values are valid everywhere.
func checkLabelParams(names []string, params map[string]string) error {
	for _, name := range names {
		if v, ok := params[name]; ok && !dnsLabel.MatchString(v) {
			return &ArgumentError{Field: "params." + name, Reason: fmt.Sprintf("%q is not a single DNS label ([a-z0-9-], 1 to 63 characters, no dots)", truncate(v))}
		}
	}
	return nil
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
