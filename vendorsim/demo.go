package vendorsim

// DemoAccounts returns one obviously fake account per vendor id, for
// `server --dev` and docker-compose; add them with [Sim.AddAccount]. Besides
// credentials they carry the non-secret values a profile needs to reach
// them: "tenancy" (hotdocs_advance), "region" (abbyy_vantage), "host"
// (brightpattern) and "file_ids" (saasu). Each call returns fresh maps.
func DemoAccounts() map[string]map[string]string {
	return map[string]map[string]string{
		idHotDocs: {
			"client_name":        "demo-client",
			"principal_name":     "demo-principal",
			"principal_password": "demo-password",
			"tenancy":            "demo",
		},
		idSmartDocumentor: {
			"client_id":     "demo-client",
			"client_secret": "demo-secret",
		},
		idAbbyy: {
			"client_id":     "demo-client",
			"client_secret": "demo-secret",
			"username":      "demo@example.com",
			"password":      "demo-password",
			"region":        "eu",
		},
		idBrightPattern: {
			"client_id":     "demo.user",
			"client_secret": "demo-secret",
			"host":          "demo.example.com",
		},
		idSaasu: {
			"username": "demo@example.com",
			"password": "demo-password",
			"file_ids": "15431 14078 2045",
		},
		idOAuth2: {
			"client_id":     "demo-client",
			"client_secret": "demo-secret",
			"username":      "demo-user",
			"password":      "demo-password",
		},
	}
}
