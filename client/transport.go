package client

import (
	"io"
	"net/http"

	"golang.org/x/oauth2"
)

// maxDrain bounds how much of a rejected answer is read so its connection
// can be reused.
const maxDrain = 64 << 10

// transport authorizes requests with broker tokens and retries a 401 once.
type transport struct {
	source *tokenSource
	base   http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.source.token(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.send(req, req.Body, tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// The vendor rejected the token (revoked, or its key rotated early).
	// Report it even when this request cannot be retried, so the next one
	// gets a new token.
	if err := t.source.invalidate(req.Context(), tok); err != nil {
		return resp, nil
	}
	body, ok := replayBody(req)
	if !ok {
		return resp, nil
	}
	// The source never answers a token it has seen rejected; when the
	// broker has no other (ErrRejectedToken), the 401 stands.
	fresh, err := t.source.token(req.Context())
	if err != nil || fresh.AccessToken == tok.AccessToken {
		closeReader(body)
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()
	return t.send(req, body, fresh)
}

// send clones req (a RoundTripper must not change its request) with body
// and tok's Authorization header.
func (t *transport) send(req *http.Request, body io.ReadCloser, tok *oauth2.Token) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.Body = body
	tok.SetAuthHeader(out)
	return t.base.RoundTrip(out)
}

// replayBody returns a fresh copy of req's body, or false when it cannot
// be sent twice.
func replayBody(req *http.Request) (io.ReadCloser, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	return body, true
}

// closeBody closes a request body the transport will not send (a
// RoundTripper must always close it).
func closeBody(req *http.Request) { closeReader(req.Body) }

func closeReader(r io.ReadCloser) {
	if r != nil {
		r.Close()
	}
}
