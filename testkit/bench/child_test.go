package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// TestMain lets this test binary serve as a child process, as the load
// tool's does.
func TestMain(m *testing.M) {
	if child, err := ServeChild(context.Background()); child {
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestChildEchoAnswersCPUAndProfiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	want := &tokenbrokerv1.GetTokenResponse{AccessToken: "tok", TokenType: "Bearer", ExpiresIn: 60}
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	child, err := startServerChild(ctx, childSpec{Kind: childEchoGRPC, Response: b})
	if err != nil {
		t.Fatal(err)
	}
	defer child.stop()
	if child.httpAddr != "" {
		t.Errorf("bare gRPC echo: HTTP address %q, want none", child.httpAddr)
	}
	conn, err := dial(child.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	profile := filepath.Join(t.TempDir(), "echo.prof")
	if err := child.startProfile(profile); err != nil {
		t.Fatal(err)
	}
	before, err := child.cpu()
	if err != nil {
		t.Fatal(err)
	}
	client := tokenbrokerv1.NewTokenServiceClient(conn)
	for range 100 {
		got, err := client.GetToken(ctx, HotPathRequest())
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("echo answered %v, want %v", got, want)
		}
	}
	after, err := child.cpu()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("CPU time %v then %v after 100 calls, want it to grow", before, after)
	}
	if err := child.stopProfile(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(profile); err != nil || fi.Size() == 0 {
		t.Errorf("profile %s: %v, %v", profile, fi, err)
	}
	if _, err := child.ask("profile " + filepath.Join(t.TempDir(), "missing-dir", "x.prof")); err == nil {
		t.Error("a profile into a missing directory: no error")
	}
}
