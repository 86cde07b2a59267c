package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/tokenbroker/tokenbroker/app"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// devVendor is how --dev points one vendor at the simulator: its settings
// ({sim} is the simulator's base URL) and the demo profile's params.
type devVendor struct {
	settings config.Settings
	params   map[string]string
}

var devVendors = map[string]devVendor{
	"smartdocumentor": {settings: config.Settings{"token_url": "{sim}/smartdocumentor/connect/token"}},
	// The password grant also exercises refresh tokens.
	"oauth2": {settings: config.Settings{
		"token_url":   "{sim}/oauth2/token",
		"grant_type":  "password",
		"client_auth": "client_secret_basic",
	}},
	"hotdocs_advance": {
		settings: config.Settings{"token_url": "{sim}/hotdocs_advance/{tenancy}/auth/Authorize/ServicePrincipalLogIn"},
		params:   map[string]string{"tenancy": "demo"},
	},
	"abbyy_vantage": {
		settings: config.Settings{
			"token_url":        "{sim}/abbyy_vantage/{region}/auth2/connect/token",
			"tenant_token_url": "{sim}/abbyy_vantage/{region}/auth2/{tenant_id}/connect/token",
		},
		params: map[string]string{"region": "eu"},
	},
	"brightpattern": {settings: config.Settings{
		"host":      "demo.example.com",
		"token_url": "{sim}/brightpattern/{host}/configapi/v2/oauth/token",
	}},
	"saasu": {settings: config.Settings{
		"token_url":   "{sim}/saasu/authorisation/token",
		"refresh_url": "{sim}/saasu/authorisation/refresh",
	}},
}

// dev is a running --dev environment.
type dev struct {
	sim        *vendorsim.Sim
	config     *config.Config
	profiles   []string
	configPath string
	env        config.Lookup
}

// startDev starts the simulator and builds a config with a demo profile per
// vendor on top of the optional config file (whose addresses are kept).
func startDev(configPath string, env config.Lookup) (*dev, error) {
	sim, err := vendorsim.Start("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("vendor simulator: %w", err)
	}
	accounts := vendorsim.DemoAccounts()
	for vendor, creds := range accounts {
		sim.AddAccount(vendor, creds)
	}
	d := &dev{sim: sim, configPath: configPath, env: env}
	if d.config, err = d.load(); err != nil {
		_ = sim.Close()
		return nil, err
	}
	return d, nil
}

// load reads the optional config file and adds the simulator's vendors and
// demo profiles (at startup and at each reload).
func (d *dev) load() (*config.Config, error) {
	// No load balancer to wait for in development: no shutdown delay
	// unless the file sets one.
	defaults := config.Defaults()
	defaults.ShutdownDelay = 0
	cfg, err := config.LoadWith(d.configPath, d.env, defaults)
	if err != nil {
		return nil, err
	}
	cfg.Cache.Redis = nil
	if cfg.Vendors == nil {
		cfg.Vendors = map[string]config.Settings{}
	}
	if cfg.Profiles == nil {
		cfg.Profiles = map[string]config.Profile{}
	}
	accounts := vendorsim.DemoAccounts()
	sim := d.sim
	var profiles []string
	registry := vendors.Default()
	for _, st := range registry.All() {
		id := st.Info().ID
		dv, ok := devVendors[id]
		if !ok {
			continue
		}
		settings := config.Settings{}
		for k, v := range dv.settings {
			if s, ok := v.(string); ok {
				v = strings.ReplaceAll(s, "{sim}", sim.URL())
			}
			settings[k] = v
		}
		cfg.Vendors[id] = settings
		// Demo accounts also carry where they live (tenancy, region,
		// host...): only the vendor's credentials go into the profile.
		info := st.Info()
		creds := map[string]secret.Secret{}
		for k, v := range accounts[id] {
			if slices.Contains(info.RequiredCredentials, k) || slices.Contains(info.OptionalCredentials, k) {
				creds[k] = secret.New(v)
			}
		}
		name := "demo-" + strings.ReplaceAll(id, "_", "-")
		cfg.Profiles[name] = config.Profile{Vendor: id, Credentials: creds, Params: dv.params}
		profiles = append(profiles, name)
	}
	sort.Strings(profiles)
	d.profiles = profiles
	return cfg, nil
}

func (d *dev) close() { _ = d.sim.Close() }

// printBanner tells a newcomer how to call the dev server.
func (d *dev) printBanner(w io.Writer, a *app.App) {
	httpAddr, grpcAddr := a.Server.HTTPAddr().String(), a.Server.GRPCAddr().String()
	fmt.Fprintf(w, `
tokenbroker is running in dev mode (in-memory cache, vendor simulator at %s).
Demo profiles: %s

  curl -s -X POST http://%s/v1/token -d '{"profile":"demo-smartdocumentor"}'
  grpcurl -plaintext -d '{"profile":"demo-smartdocumentor"}' %s tokenbroker.v1.TokenService/GetToken
  curl -s http://%s/v1/vendors

Press Ctrl-C to stop.

`, d.sim.URL(), strings.Join(d.profiles, ", "), httpAddr, grpcAddr, httpAddr)
}
