package app

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/tokenbroker/tokenbroker/auth"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// The checks of the configuration's content that need what package config
// does not know: the vendor registry (settings, params, allow_params,
// allow lists) and the flags (--insecure-allow-unauthenticated). Package
// config checks the rest (ranges, keys that go together) when it parses.
// Both run at startup and at every reload (App.build), and every error
// names the config key it is about.

// vendorSettings checks vendors.<id> against the vendor's settings.
func vendorSettings(id string, raw config.Settings, reg *vendors.Registry) (vendors.Settings, error) {
	st, ok := reg.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("vendors.%s: unknown vendor id", id)
	}
	return settingsFor("vendors."+id, raw, st.Info())
}

// profileSettings checks profiles.<name> against its vendor (credential
// and param names, settings, allow_params over the vendor's settings
// overlaid with the profile's) and returns the profile's settings.
func profileSettings(name string, p config.Profile, reg *vendors.Registry, vendorSet vendors.Settings) (vendors.Settings, error) {
	st, ok := reg.Lookup(p.Vendor)
	if !ok {
		return nil, fmt.Errorf("profiles.%s.vendor: unknown vendor id %q", name, p.Vendor)
	}
	info := st.Info()
	if err := vendors.CheckCredentialNames(info, p.Credentials); err != nil {
		return nil, fmt.Errorf("profiles.%s.%w", name, err)
	}
	if err := vendors.CheckParamNames(info, p.Params); err != nil {
		return nil, fmt.Errorf("profiles.%s.%w", name, err)
	}
	s, err := settingsFor("profiles."+name+".settings", p.Settings, info)
	if err != nil {
		return nil, err
	}
	if err := checkAllowParams(name, p, info, vendorSet.Overlay(s)); err != nil {
		return nil, err
	}
	return s, nil
}

// checkAllowParams checks a profile's allow_params: each names a param of
// its vendor that the profile does not fix, and a param that chooses where
// the request goes (vendors.TargetParams) comes with the values it may
// take (docs/design.md, Security model).
func checkAllowParams(name string, p config.Profile, info vendors.Info, set vendors.Settings) error {
	targets := vendors.TargetParams(info, set)
	for _, param := range slices.Sorted(maps.Keys(p.AllowParams)) {
		field := "profiles." + name + ".allow_params." + param
		if !slices.Contains(info.Params, param) {
			return fmt.Errorf("%s: not a parameter of vendor %s (its params: %s)", field, info.ID, strings.Join(info.Params, ", "))
		}
		if _, fixed := p.Params[param]; fixed {
			return fmt.Errorf("%s: the profile fixes this param in params.%s", field, param)
		}
		values := p.AllowParams[param]
		if values == nil && slices.Contains(targets, param) {
			return fmt.Errorf("%s: this param chooses where the vendor request (with the profile's credentials) is sent; list the values callers may choose", field)
		}
		for _, v := range values {
			if v == "" {
				return fmt.Errorf("%s: an empty value", field)
			}
		}
	}
	return nil
}

func settingsFor(field string, raw config.Settings, info vendors.Info) (vendors.Settings, error) {
	flat, err := raw.Flatten(field)
	if err != nil {
		return nil, err
	}
	for k := range flat {
		if !info.AllowsSetting(k) {
			return nil, fmt.Errorf("%s.%s: not a setting of vendor %s", field, k, info.ID)
		}
	}
	s := vendors.Settings(flat)
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if u := s["token_url"]; u != "" {
		// Templates are checked when resolved; here only the scheme rule.
		if err := vendors.CheckTokenURL(u); err != nil && !containsPlaceholder(u) {
			return nil, fmt.Errorf("%s.token_url: %w", field, err)
		}
	}
	return s, nil
}

func containsPlaceholder(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '{' {
			return true
		}
	}
	return false
}

// checkExposure refuses a server without caller authentication on a
// non-loopback address unless --insecure-allow-unauthenticated
// (docs/design.md, Security model).
func checkExposure(cfg *config.Config, insecureAllowUnauthenticated bool) error {
	if exposed := exposedAddrs(cfg); !authConfigured(cfg) && len(exposed) > 0 && !insecureAllowUnauthenticated {
		return fmt.Errorf("%s is not a loopback address and no callers are configured, so anyone who can reach it could obtain vendor tokens: "+
			"configure caller authentication (clients.<name>.api_key_sha256, or clients.<name>.cert_subject with tls.client_ca_file; see the README's \"Security model\"), "+
			"listen on 127.0.0.1, or start with --insecure-allow-unauthenticated to accept the risk", strings.Join(exposed, " and "))
	}
	return nil
}

// authConfigured reports whether cfg asks for caller authentication.
func authConfigured(cfg *config.Config) bool {
	return len(cfg.Clients) > 0 || cfg.TLS.ClientCAFile != "" || len(cfg.Auth.SPIFFEBundles) > 0
}

// exposedAddrs returns the listen addresses that are not loopback.
func exposedAddrs(cfg *config.Config) []string {
	var out []string
	for _, l := range []struct{ key, addr string }{{"grpc_addr", cfg.GRPCAddr}, {"http_addr", cfg.HTTPAddr}} {
		if !loopbackAddr(l.addr) {
			out = append(out, l.key+" "+l.addr)
		}
	}
	return out
}

// loopbackAddr reports whether a listen address binds only loopback: an
// empty host or an unspecified IP binds every interface, and a host name
// other than localhost could resolve anywhere.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkAllowEntries makes sure every allow entry names a configured
// profile or a known vendor: a typo fails at startup instead of denying
// calls later.
func checkAllowEntries(cfg *config.Config, reg *vendors.Registry) error {
	for _, name := range slices.Sorted(maps.Keys(cfg.Clients)) {
		for i, entry := range cfg.Clients[name].Allow {
			key := fmt.Sprintf("clients.%s.allow[%d]", name, i)
			if entry == auth.PermissionStatus {
				continue
			}
			if vendor, ok := strings.CutPrefix(entry, auth.VendorPrefix); ok {
				if _, known := reg.Lookup(vendor); !known {
					return fmt.Errorf("%s: %q names no known vendor", key, entry)
				}
				continue
			}
			if _, ok := cfg.Profiles[entry]; !ok {
				return fmt.Errorf("%s: no profile %q is configured (write %s<id> for inline credentials of a vendor)", key, entry, auth.VendorPrefix)
			}
		}
	}
	return nil
}
