package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tokenbroker/tokenbroker/auth/jwtverify"
)

// Workload identity (docs/design.md, Security model): a client is found by
// the subject of a verified JWT (jwt_subject, or spiffe_id for a
// JWT-SVID), or by the SPIFFE ID of a verified X.509-SVID (spiffe_id).

// jwtRule matches a verified JWT's issuer and subject to a client.
type jwtRule struct {
	issuer  string
	subject string // without the trailing "*" when prefix
	prefix  bool
	client  *client
}

// errNoJWTClient: the token verified, but no client claims its subject.
var errNoJWTClient = errors.New("no client's jwt_subject or spiffe_id matches the token's subject")

// matches reports whether the rule covers sub from issuer: exact, or a
// prefix followed by exactly one more segment (no ":" or "/").
func (r *jwtRule) matches(issuer, sub string) bool {
	if r.issuer != issuer {
		return false
	}
	if !r.prefix {
		return sub == r.subject
	}
	rest, ok := strings.CutPrefix(sub, r.subject)
	return ok && rest != "" && !strings.ContainsAny(rest, ":/")
}

// addJWTRules records how c's JWTs are recognised; issuers are the
// configured issuers' names.
func (p *Policy) addJWTRules(name string, cc Client, c *client, issuers []string) error {
	field := "clients." + name
	issuer := strings.TrimSpace(cc.JWTIssuer)
	if issuer != "" && !contains(issuers, issuer) {
		return fmt.Errorf("%s.jwt_issuer: %q is not an issuer of auth.jwt_issuers", field, issuer)
	}
	if issuer == "" && len(issuers) == 1 {
		issuer = issuers[0]
	}
	if s := strings.TrimSpace(cc.JWTSubject); s != "" {
		if len(issuers) == 0 {
			return fmt.Errorf("%s.jwt_subject: needs auth.jwt_issuers", field)
		}
		if issuer == "" {
			return fmt.Errorf("%s.jwt_issuer: required, since auth.jwt_issuers lists several issuers", field)
		}
		r := &jwtRule{issuer: issuer, subject: s, client: c}
		if prefix, ok := strings.CutSuffix(s, "*"); ok {
			if prefix == "" || !strings.HasSuffix(prefix, ":") && !strings.HasSuffix(prefix, "/") || strings.Contains(prefix, "*") {
				return fmt.Errorf("%s.jwt_subject: %q: a * may only be the whole last segment (system:serviceaccount:<namespace>:*)", field, s)
			}
			r.subject, r.prefix = prefix, true
		} else if strings.Contains(s, "*") {
			return fmt.Errorf("%s.jwt_subject: %q: a * may only be the whole last segment", field, s)
		}
		if err := p.addRule(field+".jwt_subject", r); err != nil {
			return err
		}
		c.jwt = true
	}
	if s := strings.TrimSpace(cc.SPIFFEID); s != "" {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return fmt.Errorf("%s.spiffe_id: %q is not a SPIFFE ID: %v", field, s, err)
		}
		if other, dup := p.bySPIFFEID[id.String()]; dup {
			return fmt.Errorf("%s.spiffe_id: the same SPIFFE ID as clients.%s", field, other.name)
		}
		p.bySPIFFEID[id.String()] = c
		c.spiffe = true
		// A JWT-SVID names the ID in sub; with several issuers and no
		// jwt_issuer the ID is for X.509-SVIDs only.
		if issuer != "" {
			if err := p.addRule(field+".spiffe_id", &jwtRule{issuer: issuer, subject: id.String(), client: c}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Policy) addRule(field string, r *jwtRule) error {
	for _, other := range p.jwtRules {
		if other.issuer == r.issuer && other.subject == r.subject && other.prefix == r.prefix {
			return fmt.Errorf("%s: the same subject as clients.%s", field, other.client.name)
		}
	}
	p.jwtRules = append(p.jwtRules, r)
	return nil
}

// clientForJWT returns the client of a verified token: an exact subject
// wins over a wildcard, a longer wildcard over a shorter one.
func (p *Policy) clientForJWT(c jwtverify.Claims) *client {
	var best *jwtRule
	for _, r := range p.jwtRules {
		if !r.matches(c.Issuer, c.Subject) {
			continue
		}
		if !r.prefix {
			return r.client
		}
		if best == nil || len(r.subject) > len(best.subject) {
			best = r
		}
	}
	if best == nil {
		return nil
	}
	return best.client
}

// authenticateJWT verifies a bearer JWT and finds its client. sub is the
// verified subject when no client matches, for the audit line.
func (p *Policy) authenticateJWT(ctx context.Context, token string) (c *client, sub string, err error) {
	claims, err := p.jwt.Verify(ctx, token)
	if err != nil {
		return nil, "", fmt.Errorf("the JWT is not accepted: %w", err)
	}
	if c = p.clientForJWT(claims); c == nil {
		return nil, claims.Subject, errNoJWTClient
	}
	return c, "", nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
