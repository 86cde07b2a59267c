package test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// postJSON sends a REST call and returns status, headers and body.
func postJSON(t *testing.T, url, body string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sameTokenAtOnce has callers call GetToken(req) at the same moment,
// caller i through client(i). Any error, or two callers getting different
// tokens, fails the test; it returns the one token.
func sameTokenAtOnce(t *testing.T, callers int, client func(i int) tokenbrokerv1.TokenServiceClient, req *tokenbrokerv1.GetTokenRequest) string {
	t.Helper()
	ctx := ctxT(t)
	tokens := make([]string, callers)
	errs := make([]error, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-start
			resp, err := client(i).GetToken(ctx, req)
			errs[i] = err
			if err == nil {
				tokens[i] = resp.AccessToken
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("caller %d got another token than caller 0", i)
		}
	}
	return tokens[0]
}
