package vendors

import (
	"slices"
	"strings"

	"github.com/tokenbroker/tokenbroker/secret"
)

// What a caller may use of the broker's configuration (docs/design.md,
// Security model, "Isolation between callers"): an inline call brings its
// own secret and never borrows the operator's vendor-level secret
// material; a profile call sets only the params the profile allows.

// identifyingCredentials name a client or a user; every other credential
// proves who it is (a secret). client_id with the broker's certificate,
// or a user name alone, proves nothing the caller owns.
var identifyingCredentials = map[string]bool{
	"client_id":      true,
	"client_name":    true,
	"principal_name": true,
	"username":       true,
}

// IsSecretCredential reports whether the credential name is a secret (it
// proves an identity) rather than an identifier.
func IsSecretCredential(name string) bool { return !identifyingCredentials[name] }

// HasSecretCredential reports whether creds hold at least one non-empty
// secret credential.
func HasSecretCredential(creds secret.Map) bool {
	for name, v := range creds {
		if IsSecretCredential(name) && !v.IsZero() {
			return true
		}
	}
	return false
}

// SecretCredentials lists info's credentials that are secrets, for error
// messages.
func SecretCredentials(info Info) []string {
	var out []string
	for _, name := range append(slices.Clone(info.RequiredCredentials), info.OptionalCredentials...) {
		if IsSecretCredential(name) {
			out = append(out, name)
		}
	}
	return out
}

// IsSecretSetting reports whether a setting carries the operator's own
// secret material: the broker's mutual TLS identity toward the vendor,
// its workload identity token files (assertion_file,
// client_assertion_file, subject_token_file: workload.go), and
// extra_params (operators put API keys there). Such settings apply to
// profiles only.
func IsSecretSetting(key string) bool {
	switch key {
	case "tls_client_cert", "tls_client_key", "assertion_file", "client_assertion_file", "subject_token_file":
		return true
	}
	return strings.HasPrefix(key, "extra_params.")
}

// InlineSettings returns s without its secret settings: what an inline
// call (credentials sent by the caller) may use of the vendor's
// configuration.
func InlineSettings(s Settings) Settings {
	out := make(Settings, len(s))
	for k, v := range s {
		if !IsSecretSetting(k) {
			out[k] = v
		}
	}
	return out
}

// urlPlaceholder matches a URL template's placeholder (template.go).
func urlPlaceholders(tmpl string) []string {
	var out []string
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		out = append(out, m[1])
	}
	return out
}

// TargetParams returns the params of info that choose where a request
// goes: those the vendor's default URLs place in a host or path
// (Info.TargetParams), and any param an operator's URL setting (a setting
// whose name ends in _url) uses as a placeholder. A profile may let
// callers set such a param only to values it lists.
func TargetParams(info Info, set Settings) []string {
	out := slices.Clone(info.TargetParams)
	for k, v := range set {
		if !strings.HasSuffix(k, "_url") {
			continue
		}
		for _, name := range urlPlaceholders(v) {
			if slices.Contains(info.Params, name) && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}
