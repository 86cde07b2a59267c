package vendors

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tokenbroker/tokenbroker/secret"
)

// The checks every strategy makes of a request's inputs before it builds
// anything from them: credentials, params and settings the vendor does not
// know, or that the configuration would not send, are errors naming the
// field, never silently ignored.

// sortedKeys makes checks deterministic: the same bad input always names
// the same field.
func sortedKeys[V any, M ~map[string]V](m M) []string {
	return slices.Sorted(maps.Keys(m))
}

// CheckCredentialNames rejects credential keys the vendor does not use, so
// a typo is an error instead of a silently different cache entry. The
// configuration loader checks a profile's credentials with it; a request's
// are checked again with the profile's merged in.
func CheckCredentialNames[V any, M ~map[string]V](info Info, creds M) error {
	for _, name := range sortedKeys(creds) {
		if !slices.Contains(info.RequiredCredentials, name) && !slices.Contains(info.OptionalCredentials, name) {
			return &ArgumentError{Field: "credentials." + name, Reason: fmt.Sprintf("is not a credential of vendor %s (expected %s)", info.ID, strings.Join(append(slices.Clone(info.RequiredCredentials), info.OptionalCredentials...), ", "))}
		}
	}
	return nil
}

// CheckParamNames rejects params the vendor does not know.
func CheckParamNames(info Info, params map[string]string) error {
	for _, name := range sortedKeys(params) {
		if !slices.Contains(info.Params, name) {
			return &ArgumentError{Field: "params." + name, Reason: fmt.Sprintf("is not a parameter of vendor %s", info.ID)}
		}
	}
	return nil
}

// checkCredentialNames is CheckCredentialNames, and every required
// credential present.
func checkCredentialNames(info Info, creds secret.Map) error {
	if err := CheckCredentialNames(info, creds); err != nil {
		return err
	}
	for _, name := range info.RequiredCredentials {
		if creds[name].IsZero() {
			return &ArgumentError{Field: "credentials." + name, Reason: "is required"}
		}
	}
	return nil
}

// checkCredentialsUsed rejects a credential the configuration does not send
// (a username with the client_credentials grant, a client_secret with
// private_key_jwt): a secret that is silently ignored hides a mistake.
func checkCredentialsUsed(creds secret.Map, used map[string]bool, set Settings) error {
	for _, name := range sortedKeys(creds) {
		if !used[name] && !creds[name].IsZero() {
			return &ArgumentError{Field: "credentials." + name, Reason: fmt.Sprintf("is not used with grant_type %s and client_auth %s", set.String("grant_type", "client_credentials"), set.String("client_auth", authBasic))}
		}
	}
	return nil
}

// checkSettingNames rejects settings the vendor does not take. The config
// loader checks them too; this keeps a vendor's fixed choices (Saasu's
// client_auth, ABBYY's body format) fixed whoever builds the Input.
func checkSettingNames(info Info, set Settings) error {
	for _, key := range sortedKeys(set) {
		if !info.AllowsSetting(key) {
			return &ConfigError{Setting: key, Reason: "is not a setting of vendor " + info.ID}
		}
	}
	return nil
}

// checkOneOf rejects a param outside its fixed set of values.
func checkOneOf(oneOf map[string][]string, params map[string]string) error {
	for _, name := range sortedKeys(oneOf) {
		allowed := oneOf[name]
		if v, ok := params[name]; ok && !slices.Contains(allowed, v) {
			return &ArgumentError{Field: "params." + name, Reason: fmt.Sprintf("%q is not one of %s", truncate(v), strings.Join(allowed, ", "))}
		}
	}
	return nil
}

// checkParamsUsed rejects params the vendor does not know, or that this
// configuration does not send.
func checkParamsUsed(info Info, params map[string]string, used map[string]bool) error {
	if err := CheckParamNames(info, params); err != nil {
		return err
	}
	for _, name := range sortedKeys(params) {
		if !used[name] {
			return &ArgumentError{Field: "params." + name, Reason: "is not used with this configuration"}
		}
	}
	return nil
}
