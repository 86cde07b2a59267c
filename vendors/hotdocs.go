package vendors

import "context"

// HotDocs Advance's service principal log-in, as "Getting an Access Token
// Using the Resource Owner Flow" (https://help.hotdocs.com/advance/cloud/current/admin/Getting_an_Access_Token_Using_the_Resource_Owner_Flow.htm)
// documents it: a POST of the JSON object {ClientName, PrincipalName,
// PrincipalPassword} to the tenancy's ServicePrincipalLogIn URL, answered
// 200 text/plain with the bare token. It is not RFC 6749 (no grant_type,
// no JSON answer), so it has its own small Call on the shared exchange.
//
// Choices where the document is vague:
//   - URL: the page names no host; docs/design.md, Vendors gives
//     https://{tenancy}.hotdocsadvance.com/auth/Authorize/ServicePrincipalLogIn
//     (the token_url default, with domain a setting), and on-premise
//     operators set token_url to https://{tenancy}.{domain}/HdaAuth/... .
//     tenancy is a request param and must be one DNS label ([a-z0-9-])
//     wherever token_url places it; a moniker with capitals is sent
//     lower-cased by the caller (DNS does not care).
//   - Body: exactly the three string members, in the document's order,
//     Content-Type application/json (the C# example's JsonContent);
//     credentials client_name, principal_name, principal_password.
//   - Accept: text/plain, the documented answer type. A JSON-quoted token
//     (what ASP.NET sends for a string when JSON is negotiated) is read too.
//   - Lifetime: the answer carries none (it is an admin setting per API
//     client), so the JWT exp claim when the token is a JWT, else
//     default_ttl (1h unless configured).
//   - Errors: none documented. 401 and 403 are rejected credentials, other
//     4xx a rejected request, 5xx and 429 retried; a text/plain error body
//     reaches the caller scrubbed and truncated.
var hotDocsInfo = Info{
	ID:                  "hotdocs_advance",
	DisplayName:         "HotDocs Advance",
	GrantTypes:          []string{"password"},
	RequiredCredentials: []string{"client_name", "principal_name", "principal_password"},
	Params:              []string{"tenancy"},
	TargetParams:        []string{"tenancy"},
	Settings:            []string{"domain"},
	DocumentationURL:    "https://help.hotdocs.com/advance/cloud/current/admin/Getting_an_Access_Token_Using_the_Resource_Owner_Flow.htm",
}

var hotDocsDefaults = Settings{
	"token_url":   "https://{tenancy}.{domain}/auth/Authorize/ServicePrincipalLogIn",
	"domain":      "hotdocsadvance.com",
	"default_ttl": "1h",
}

// hotDocsStrategy is the HotDocs Advance vendor.
type hotDocsStrategy struct{}

// HotDocsAdvance is the HotDocs Advance vendor.
func HotDocsAdvance() Strategy { return hotDocsStrategy{} }

func (hotDocsStrategy) Info() Info { return hotDocsInfo }

func (hotDocsStrategy) ResolveCall(in Input) (Call, error) {
	if err := checkSettingNames(hotDocsInfo, in.Settings); err != nil {
		return nil, err
	}
	set := hotDocsDefaults.Overlay(in.Settings)
	if err := checkCredentialNames(hotDocsInfo, in.Credentials); err != nil {
		return nil, err
	}
	if err := checkLabelParams([]string{"tenancy"}, in.Params); err != nil {
		return nil, err
	}
	used := map[string]bool{}
	target, err := resolveTarget(hotDocsInfo, "token_url", set, in.Params, used)
	if err != nil {
		return nil, err
	}
	if err := checkParamsUsed(hotDocsInfo, in.Params, used); err != nil {
		return nil, err
	}
	x, err := baseExchange(hotDocsInfo.ID, target, set, in)
	if err != nil {
		return nil, err
	}
	x.body, x.contentType, err = encodeBody(bodyJSON, "", fields{
		{"ClientName", in.Credentials.Get("client_name")},
		{"PrincipalName", in.Credentials.Get("principal_name")},
		{"PrincipalPassword", in.Credentials.Get("principal_password")},
	})
	if err != nil {
		return nil, err
	}
	x.accept = "text/plain"
	x.format = formatBareToken
	return &hotDocsCall{exchange: x}, nil
}

// hotDocsCall is a prepared service principal log-in.
type hotDocsCall struct{ exchange }

func (c *hotDocsCall) Target() string { return c.url }

// Fetch logs in; HotDocs Advance issues no refresh tokens.
func (c *hotDocsCall) Fetch(ctx context.Context, _ string) (*Token, error) {
	x := c.exchange
	return x.do(ctx)
}
