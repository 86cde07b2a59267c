package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenbroker/tokenbroker/auth/jwtverify"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/internal/logbuf"
	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
)

// openMethodPrefixes need no caller credentials. Health is for load
// balancers and orchestrator probes, which carry none, and tells only
// whether the server is serving. Reflection describes the public API
// schema, the same as /openapi.json; it serves no data.
var openMethodPrefixes = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

func openMethod(method string) bool {
	for _, p := range openMethodPrefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// Authentication methods, as the audit log names them.
const (
	viaAPIKey      = "api_key"
	viaCertificate = "mtls"
	viaJWT         = "jwt"
	viaSVID        = "x509_svid"
)

// identity is an authenticated caller.
type identity struct {
	// principal is the client's name, or the certificate subject when
	// any verified certificate is accepted.
	principal string
	// client is nil when any verified certificate is accepted.
	client *client
	via    string
}

// decision is one authorization decision, as audited.
type decision struct {
	principal string
	via       string
	method    string
	target    string
	allowed   bool
	reason    string
	// claimedSubject is the subject of a certificate that failed
	// verification (attacker-controlled text, logged as a value).
	claimedSubject string
}

// UnaryInterceptor authenticates, authorizes, rate limits and audits
// every unary call except the open ones (health). Deny by default: a method
// this package does not know is PERMISSION_DENIED for every caller.
func (p *Policy) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if openMethod(info.FullMethod) {
			return handler(ctx, req)
		}
		if err := p.check(ctx, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor lets the open streams (health Watch, reflection)
// through and denies every other stream: TokenService has none.
func (p *Policy) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if openMethod(info.FullMethod) {
			return handler(srv, ss)
		}
		if err := p.check(ss.Context(), info.FullMethod, nil); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// check decides one call and writes its audit line.
func (p *Policy) check(ctx context.Context, method string, req any) error {
	d := decision{method: method, target: target(req)}
	id, claimed, err := p.authenticate(ctx)
	if err != nil {
		d.reason, d.claimedSubject = err.Error(), claimed
		p.audit(ctx, &d)
		return status.Error(codes.Unauthenticated, "tokenbroker: "+err.Error())
	}
	d.principal, d.via = id.principal, id.via
	reqinfo.SetPrincipal(ctx, id.principal)
	if err := p.authorize(id, method, req); err != nil {
		d.reason = err.Error()
		p.audit(ctx, &d)
		return status.Error(codes.PermissionDenied, "tokenbroker: "+err.Error())
	}
	if costsVendorRequest(req) {
		if ok, wait := p.limiter.allow(id.principal); !ok {
			d.reason = "rate limited: force_refresh and InvalidateToken calls exceed limits.refresh_per_minute"
			p.audit(ctx, &d)
			st := status.New(codes.ResourceExhausted, fmt.Sprintf("tokenbroker: client %s sends force_refresh and InvalidateToken calls faster than the configured limit; retry in %s", id.principal, (wait+time.Second-1).Truncate(time.Second)))
			if withRetry, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
				st = withRetry
			}
			return st.Err()
		}
	}
	d.allowed = true
	p.audit(ctx, &d)
	return nil
}

// authenticate finds the caller from its bearer credential (an API key or
// a JWT) and/or its verified client certificate (a subject-DN certificate
// or an X.509-SVID). Every credential presented must be valid, and when
// two are, they must name the same client. claimed is a subject the caller
// claimed without proof of a client (a certificate that failed
// verification, a verified JWT's subject no client has), for the audit line.
func (p *Policy) authenticate(ctx context.Context) (id identity, claimed string, err error) {
	// ValueFromIncomingContext reads one key; FromIncomingContext would
	// copy the whole metadata map on every call.
	var bearerClient *client
	bearerVia := ""
	switch vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) {
	case 0:
	case 1:
		cred, err := bearerCredential(vals[0])
		if err != nil {
			return id, "", err
		}
		// A JWT and an API key are told apart by shape alone: a JWS
		// has two dots and a JSON header, an API key no dot.
		if p.jwt != nil && jwtverify.LooksLikeJWT(cred) {
			bearerVia = viaJWT
			var sub string
			if bearerClient, sub, err = p.authenticateJWT(ctx, cred); err != nil {
				return id, sub, err
			}
			break
		}
		if err := checkAPIKey(cred); err != nil {
			return id, "", err
		}
		bearerVia = viaAPIKey
		if bearerClient = p.clientForKey(cred); bearerClient == nil {
			return id, "", errUnknownKey
		}
	default:
		return id, "", fmt.Errorf("%d authorization values; send one", len(vals))
	}

	chain, err := p.presentedChain(ctx)
	if err != nil {
		return id, "", err
	}
	var cert verifiedChain
	if chain != nil {
		if cert, claimed, err = p.verifyChainOnce(chain); err != nil {
			return id, claimed, fmt.Errorf("the client certificate is not accepted: %v", err)
		}
	}

	var certClient *client
	certVia := viaCertificate
	switch {
	case cert.spiffeID != "":
		certVia = viaSVID
		if p.anyCertificate {
			return identity{principal: cert.spiffeID, via: viaSVID}, "", nil
		}
		if certClient = p.bySPIFFEID[cert.spiffeID]; certClient == nil {
			return id, cert.spiffeID, fmt.Errorf("the X.509-SVID's SPIFFE ID is not a configured client's spiffe_id")
		}
	case cert.subject != "" && p.anyCertificate:
		return identity{principal: cert.subject, via: viaCertificate}, "", nil
	case cert.subject != "":
		if certClient = p.bySubject[cert.subject]; certClient == nil {
			return id, "", fmt.Errorf("the client certificate subject %q is not a configured client's cert_subject", cert.subject)
		}
	}
	switch {
	case certClient != nil:
		if bearerClient != nil && bearerClient != certClient {
			return id, "", fmt.Errorf("the bearer credential and the client certificate belong to different clients")
		}
		return identity{principal: certClient.name, client: certClient, via: certVia}, "", nil
	case bearerClient != nil:
		return identity{principal: bearerClient.name, client: bearerClient, via: bearerVia}, "", nil
	}
	return id, "", p.noCredentials()
}

// noCredentials says which credentials the configuration accepts.
func (p *Policy) noCredentials() error {
	var ways []string
	if len(p.clients) > 0 {
		if p.jwt != nil {
			ways = append(ways, `"authorization: Bearer <api key or JWT>"`)
		} else {
			ways = append(ways, `"authorization: Bearer <api key>"`)
		}
	}
	if p.roots != nil || p.bundles != nil {
		ways = append(ways, "a client certificate")
	}
	return fmt.Errorf("no credentials: send %s", strings.Join(ways, " or "))
}

// presented is a caller's certificate chain, leaf first: the TLS
// connection's, or, for REST calls, the one the HTTP middleware forwarded
// (ForwardedCertHeader), decoded only when its leaf is not known to be
// verified.
type presented struct {
	certs   []*x509.Certificate
	encoded string // the forwarded chain, when certs is nil
}

// leafFingerprint is the SHA-256 of the leaf's DER, the verified cache's
// key; it refuses a forwarded chain over the bounds before anything is
// decoded (verifyChainOnce checks a TLS connection's chain first).
func (c *presented) leafFingerprint() ([32]byte, error) {
	if c.certs != nil {
		return sha256.Sum256(c.certs[0].Raw), nil
	}
	leaf, _, _ := strings.Cut(c.encoded, ",")
	if c.encoded == chainTooLong || len(leaf) > base64.StdEncoding.EncodedLen(maxCertBytes) {
		return [32]byte{}, errChainTooLong
	}
	der, err := base64.StdEncoding.DecodeString(leaf)
	if err != nil {
		return [32]byte{}, errors.New("it cannot be read: certificate is not base64")
	}
	return sha256.Sum256(der), nil
}

// decode returns the chain's certificates.
func (c *presented) decode() ([]*x509.Certificate, error) {
	if c.certs == nil {
		certs, err := DecodeChain(c.encoded)
		if err != nil {
			return nil, fmt.Errorf("it cannot be read: %v", err)
		}
		c.certs = certs
	}
	return c.certs, nil
}

// presentedChain returns the caller's certificate chain, nil when it
// presented none (or no client CA or SPIFFE bundle is configured).
func (p *Policy) presentedChain(ctx context.Context) (*presented, error) {
	if p.roots == nil && p.bundles == nil {
		return nil, nil
	}
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return nil, nil
	}
	if p.internal != nil && p.internal(pr.Addr) {
		switch vals := metadata.ValueFromIncomingContext(ctx, forwardedCertKey); len(vals) {
		case 0:
			return nil, nil
		case 1:
			return &presented{encoded: vals[0]}, nil
		}
		return nil, fmt.Errorf("more than one client certificate chain")
	}
	if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		return &presented{certs: ti.State.PeerCertificates}, nil
	}
	return nil, nil
}

// authorize applies the client's allow list: profiles by name, inline
// credentials by "vendor:<id>". A request naming neither is let through
// for the service to reject as INVALID_ARGUMENT: it can reach no vendor.
func (p *Policy) authorize(id identity, method string, req any) error {
	switch method {
	case tokenbrokerv1.TokenService_ListVendors_FullMethodName:
		return nil
	case tokenbrokerv1.TokenService_ListCredentialStatus_FullMethodName:
		return authorizeStatus(id)
	case tokenbrokerv1.TokenService_GetToken_FullMethodName, tokenbrokerv1.TokenService_InvalidateToken_FullMethodName:
	default:
		return fmt.Errorf("method %s is not covered by the authorization policy", method)
	}
	sel, ok := req.(selector)
	if !ok {
		return fmt.Errorf("method %s: unexpected request type", method)
	}
	if id.client == nil {
		return nil
	}
	if profile := sel.GetProfile(); profile != "" {
		if !id.client.profiles[profile] {
			return fmt.Errorf("client %s may not use profile %q (clients.%s.allow)", id.principal, profile, id.principal)
		}
		return nil
	}
	if vendor := sel.GetVendor(); vendor != "" && !id.client.vendors[vendor] {
		return fmt.Errorf("client %s may not use inline credentials for vendor %q (clients.%s.allow needs %q)", id.principal, vendor, id.principal, VendorPrefix+vendor)
	}
	return nil
}

// authorizeStatus lets through the clients whose allow list has
// PermissionStatus (and, with no clients configured, every caller).
func authorizeStatus(id identity) error {
	if id.client != nil && !id.client.status {
		return fmt.Errorf("client %s may not read credential status (clients.%s.allow needs %q)", id.principal, id.principal, PermissionStatus)
	}
	return nil
}

// selector is what GetTokenRequest and InvalidateTokenRequest share.
type selector interface {
	GetProfile() string
	GetVendor() string
}

// target is what a request asks for, as audited: a profile name or
// "vendor:<id>".
func target(req any) string {
	if _, ok := req.(*tokenbrokerv1.ListCredentialStatusRequest); ok {
		return PermissionStatus
	}
	sel, ok := req.(selector)
	if !ok {
		return ""
	}
	if p := sel.GetProfile(); p != "" {
		return p
	}
	if v := sel.GetVendor(); v != "" {
		return VendorPrefix + v
	}
	return ""
}

// costsVendorRequest: force_refresh bypasses the cache and InvalidateToken
// empties it, so each can cost an upstream token request.
func costsVendorRequest(req any) bool {
	switch r := req.(type) {
	case *tokenbrokerv1.GetTokenRequest:
		return r.GetForceRefresh()
	case *tokenbrokerv1.InvalidateTokenRequest:
		return true
	}
	return false
}

// audit writes one line per decision. It names the principal, how it
// authenticated, the method, the target and the decision; never a
// credential. It is the deepest frame of an allowed call (under every
// interceptor), so it builds the record in place rather than in a slice
// of attributes: a frame past the goroutine's first stack is a stack copy
// per call (docs/performance.md).
func (p *Policy) audit(ctx context.Context, d *decision) {
	level, verdict := slog.LevelInfo, "allow"
	if !d.allowed {
		level, verdict = slog.LevelWarn, "deny"
	}
	h := p.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	// No caller PC: Logger.LogAttrs would walk the stack on every call for
	// a source location that is always this line. A logbuf.Line costs the
	// call less than a slog.Record, and is one for any other handler.
	l := logbuf.NewLine(time.Now(), level, "authorization")
	l.String("audit", "authorization")
	if ri := reqinfo.From(ctx); ri != nil {
		l.String("request_id", ri.RequestID())
	}
	l.String("principal", d.principal)
	l.String("auth", d.via)
	l.String("method", d.method)
	l.String("target", d.target)
	l.String("decision", verdict)
	if d.reason != "" {
		l.String("reason", d.reason)
	}
	if d.claimedSubject != "" {
		l.String("claimed_subject", d.claimedSubject)
	}
	_ = logbuf.Log(ctx, h, l)
}
