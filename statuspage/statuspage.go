// Package statuspage serves the credential status page for people
// (docs/design.md, Operations, "Credential status and events"): GET /status
// on the HTTP listener, one server-rendered HTML table of every profile's
// state, with no script, no external style or font, and a meta refresh.
// It asks ListCredentialStatus in process through the gRPC interceptors, as
// the REST gateway does, with the request's authorization header and
// forwarded client certificate, so the page needs the same admin:status
// permission and each view is audited like every other decision.
package statuspage

import (
	"context"
	"embed"
	"html/template"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// callTimeout bounds the status call behind one page view.
const callTimeout = 5 * time.Second

// refreshSeconds is the page's meta refresh.
const refreshSeconds = 15

//go:embed page.html
var files embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"ago": ago, "in": in, "state": stateName, "stateClass": stateClass,
}).ParseFS(files, "page.html"))

// Lister is the one RPC the page needs.
type Lister interface {
	ListCredentialStatus(ctx context.Context, in *tokenbrokerv1.ListCredentialStatusRequest, opts ...grpc.CallOption) (*tokenbrokerv1.ListCredentialStatusResponse, error)
}

// Handler serves the page. forward names the HTTP headers passed on as
// gRPC metadata besides Authorization (the forwarded client certificate).
func Handler(client Lister, forward []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		md := metadata.MD{}
		if v := r.Header.Values("Authorization"); len(v) > 0 {
			md.Set("authorization", v...)
		}
		for _, name := range forward {
			if v := r.Header.Values(name); len(v) > 0 {
				md.Set(strings.ToLower(name), v...)
			}
		}
		ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(r.Context(), md), callTimeout)
		defer cancel()
		resp, err := client.ListCredentialStatus(ctx, &tokenbrokerv1.ListCredentialStatusRequest{})
		if err != nil {
			writeError(w, err)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, view{Resp: resp, Now: time.Now(), Refresh: refreshSeconds})
	})
}

// view is what the template renders.
type view struct {
	Resp    *tokenbrokerv1.ListCredentialStatusResponse
	Now     time.Time
	Refresh int
}

// writeError answers a failed status call with its HTTP status and the
// status message (which never carries a secret), as plain text.
func writeError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="tokenbroker"`)
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		code = http.StatusGatewayTimeout
	}
	http.Error(w, st.Message(), code)
}

func stateName(s tokenbrokerv1.CredentialState) string {
	if s == tokenbrokerv1.CredentialState_CREDENTIAL_STATE_UNSPECIFIED {
		return "never fetched"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "CREDENTIAL_STATE_"))
}

// stateClass is the row's CSS class.
func stateClass(s tokenbrokerv1.CredentialState) string {
	switch s {
	case tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING:
		return "ok"
	case tokenbrokerv1.CredentialState_CREDENTIAL_STATE_REJECTED, tokenbrokerv1.CredentialState_CREDENTIAL_STATE_FAILING:
		return "bad"
	}
	return "unknown"
}

func ago(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	return now.Sub(ts.AsTime()).Round(time.Second).String() + " ago"
}

func in(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	d := ts.AsTime().Sub(now).Round(time.Second)
	if d < 0 {
		return "expired " + (-d).String() + " ago"
	}
	return "in " + d.String()
}
