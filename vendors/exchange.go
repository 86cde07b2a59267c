package vendors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxAnswerBytes bounds every token endpoint answer that is read.
const MaxAnswerBytes = 1 << 20

// maxAttempts bounds retries of 5xx, 429 and network errors.
const maxAttempts = 3

// exchange is one token request, sent with bounded time, size and retries.
type exchange struct {
	vendor      string
	url         string
	contentType string
	accept      string
	body        []byte
	// makeBody, when set, builds the body for each attempt instead of body
	// (a client assertion must be fresh each time).
	makeBody   func(now time.Time) (requestBody, error)
	header     http.Header
	format     answerFormat
	defaultTTL time.Duration
	timeout    time.Duration
	client     *http.Client
	// secrets are the request's secret values (as sent and as encoded in
	// a body), scrubbed from anything the vendor echoes back.
	secrets []string
	// now is the clock, for tests.
	now func() time.Time
}

// WithRetryDeadline marks ctx with the caller's deadline for retries: a
// fetch started under it makes no retry whose wait would end after d (it
// returns the last error, a throttled one with its Retry-After, in time
// for the caller to see it), while an attempt already sent is bounded by
// the vendor timeout only. The service uses it because a fetch outlives
// the caller who started it (others may be waiting on it), so ctx itself
// carries no deadline.
func WithRetryDeadline(ctx context.Context, d time.Time) context.Context {
	return context.WithValue(ctx, retryDeadlineKey{}, d)
}

type retryDeadlineKey struct{}

// RetryLimit is the earliest of ctx's deadline and its retry deadline
// (WithRetryDeadline): how long whoever started a fetch may wait.
func RetryLimit(ctx context.Context) (time.Time, bool) {
	limit, ok := ctx.Deadline()
	if d, has := ctx.Value(retryDeadlineKey{}).(time.Time); has && (!ok || d.Before(limit)) {
		limit, ok = d, true
	}
	return limit, ok
}

// do sends the request, retrying network errors, 5xx and 429 with
// exponential backoff and jitter (429 honours Retry-After) while the
// deadline (the caller's, capped by the vendor timeout) leaves room.
func (x *exchange) do(ctx context.Context) (*Token, error) {
	timeout := x.timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		tok, err := x.once(ctx)
		if err == nil {
			return tok, nil
		}
		var ve *Error
		if !errors.As(err, &ve) || attempt >= maxAttempts || (ve.Kind != KindUnavailable && ve.Kind != KindThrottled) {
			return nil, err
		}
		wait := backoff(attempt)
		if ve.Kind == KindThrottled && ve.RetryAfter > 0 {
			wait = ve.RetryAfter
		}
		if limit, ok := RetryLimit(ctx); ok && time.Until(limit) < wait {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// backoff is 100ms, 200ms, ... with ±50% jitter.
func backoff(attempt int) time.Duration {
	base := 100 * time.Millisecond << (attempt - 1)
	return base/2 + rand.N(base)
}

// requestBody is a body built for one attempt, with the secrets it holds
// beyond the credentials (a client assertion).
type requestBody struct {
	data        []byte
	contentType string
	secrets     []string
}

func (x *exchange) once(ctx context.Context) (*Token, error) {
	now := time.Now
	if x.now != nil {
		now = x.now
	}
	reqBody, contentType := x.body, x.contentType
	if x.makeBody != nil {
		b, err := x.makeBody(now())
		if err != nil {
			return nil, err
		}
		reqBody, contentType = b.data, b.contentType
		// Clip: never append into an array another copy of x shares.
		x.secrets = append(slices.Clip(x.secrets), b.secrets...)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.url, bytes.NewReader(reqBody))
	if err != nil {
		return nil, &Error{Vendor: x.vendor, Kind: KindUnavailable, Err: errors.New("cannot build the token request")}
	}
	for k, vs := range x.header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", contentType)
	if x.accept != "" {
		req.Header.Set("Accept", x.accept)
	}
	req.Header.Set("User-Agent", "tokenbroker/1")
	client := x.client
	if client == nil {
		client = defaultHTTPClient
	}
	sent := now()
	resp, err := client.Do(req)
	if err != nil {
		return nil, &Error{Vendor: x.vendor, Kind: KindUnavailable, Err: x.networkError(ctx, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, &Error{Vendor: x.vendor, Kind: KindUnavailable, Status: resp.StatusCode, Err: x.networkError(ctx, err)}
	}
	if len(body) > MaxAnswerBytes {
		return nil, &Error{Vendor: x.vendor, Kind: KindBadResponse, Status: resp.StatusCode, Err: fmt.Errorf("answer larger than %d bytes", MaxAnswerBytes)}
	}
	return x.interpret(resp, body, sent)
}

// networkError describes a transport failure without its URL (which may
// carry a tenant) or anything the request sent.
func (x *exchange) networkError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("no answer within the timeout: %w", context.DeadlineExceeded)
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		err = ue.Unwrap()
	}
	return errors.New(scrub(err.Error(), x.secrets))
}

// interpret turns an HTTP answer into a token or a classified *Error.
func (x *exchange) interpret(resp *http.Response, body []byte, sent time.Time) (*Token, error) {
	status := resp.StatusCode
	ctype := resp.Header.Get("Content-Type")
	if x.format == formatBareToken && status/100 == 2 {
		return x.bareToken(ctype, body, status, sent)
	}
	a, perr := parseAnswer(ctype, body)
	if perr == nil && a.Error != "" {
		return nil, x.vendorError(status, resp.Header, a)
	}
	switch {
	case status/100 == 2:
	case status == http.StatusTooManyRequests:
		return nil, &Error{Vendor: x.vendor, Kind: KindThrottled, Status: status, RetryAfter: retryAfter(resp.Header, time.Now())}
	case status >= 500:
		return nil, &Error{Vendor: x.vendor, Kind: KindUnavailable, Status: status, Description: x.plainDescription(ctype, body)}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return nil, &Error{Vendor: x.vendor, Kind: KindRejected, Status: status, Description: x.plainDescription(ctype, body)}
	default:
		return nil, &Error{Vendor: x.vendor, Kind: KindBadRequest, Status: status, Description: x.plainDescription(ctype, body)}
	}
	if perr != nil {
		return nil, &Error{Vendor: x.vendor, Kind: KindBadResponse, Status: status, Err: perr}
	}
	if a.AccessToken == "" {
		return nil, &Error{Vendor: x.vendor, Kind: KindBadResponse, Status: status, Err: errors.New("answer has no access_token")}
	}
	tok := &Token{
		AccessToken:  a.AccessToken,
		TokenType:    normalizeTokenType(a.TokenType),
		Scope:        a.Scope,
		RefreshToken: a.RefreshToken,
		IssuedAt:     sent,
	}
	d, ok, present := parseExpiresIn(a.ExpiresIn)
	if present && !ok {
		tok.Warnings = append(tok.Warnings, fmt.Sprintf("unusable expires_in %s ignored", truncate(string(a.ExpiresIn))))
	}
	if err := applyExpiry(tok, d, ok, x.defaultTTL); err != nil {
		return nil, &Error{Vendor: x.vendor, Kind: KindBadResponse, Status: status, Err: err}
	}
	return tok, nil
}

// bareToken reads a text/plain answer that is the token itself.
func (x *exchange) bareToken(ctype string, body []byte, status int, sent time.Time) (*Token, error) {
	token := strings.TrimSpace(string(body))
	// Some deployments quote the token as a JSON string.
	if len(token) >= 2 && token[0] == '"' && token[len(token)-1] == '"' {
		token = token[1 : len(token)-1]
	}
	if token == "" || strings.ContainsAny(token, " \t\r\n<>{}\"") {
		return nil, &Error{Vendor: x.vendor, Kind: KindBadResponse, Status: status, Err: fmt.Errorf("answer (%s) is not a bare token", ctype)}
	}
	tok := &Token{AccessToken: token, TokenType: "Bearer", IssuedAt: sent}
	if err := applyExpiry(tok, 0, false, x.defaultTTL); err != nil {
		return nil, &Error{Vendor: x.vendor, Kind: KindBadResponse, Status: status, Err: err}
	}
	return tok, nil
}

// rejectedErrors are the RFC 6749 error codes that mean "these credentials
// do not work" rather than "this request is malformed".
var rejectedErrors = map[string]bool{"invalid_client": true, "invalid_grant": true, "unauthorized_client": true, "access_denied": true}

func (x *exchange) vendorError(status int, h http.Header, a *answer) *Error {
	e := &Error{
		Vendor:      x.vendor,
		Status:      status,
		OAuthError:  oauthErrorCode(a.Error, x.secrets),
		Description: scrub(a.ErrorDescription, x.secrets),
		URI:         scrub(a.ErrorURI, x.secrets),
	}
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind, e.RetryAfter = KindThrottled, retryAfter(h, time.Now())
	case status >= 500 || a.Error == "temporarily_unavailable" || a.Error == "server_error":
		e.Kind = KindUnavailable
	case rejectedErrors[a.Error] || status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = KindRejected
	default:
		e.Kind = KindBadRequest
	}
	return e
}

// registeredErrors are the token endpoint error codes of RFC 6749 section
// 5.2 and later RFCs (8628, 8693, 8707, 9449). They pass unscrubbed: a
// client_id such as "client" must not turn invalid_client into
// invalid_[REDACTED], since callers match on the code.
var registeredErrors = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unauthorized_client": true,
	"unsupported_grant_type": true, "invalid_scope": true, "access_denied": true, "server_error": true,
	"temporarily_unavailable": true, "slow_down": true, "authorization_pending": true, "expired_token": true,
	"invalid_target": true, "invalid_dpop_proof": true, "use_dpop_nonce": true,
}

// oauthErrorCode is the vendor's error code as the caller sees it.
func oauthErrorCode(code string, secrets []string) string {
	if registeredErrors[code] {
		return code
	}
	return scrub(code, secrets)
}

// plainDescription keeps a short, scrubbed text body (a vendor's plain-text
// error) for the caller; anything else is dropped.
func (x *exchange) plainDescription(ctype string, body []byte) string {
	if !strings.HasPrefix(ctype, "text/plain") {
		return ""
	}
	return scrub(strings.TrimSpace(string(body)), x.secrets)
}

// retryAfter reads Retry-After as seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return min(time.Duration(secs)*time.Second, time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), time.Hour)
	}
	return 0
}
