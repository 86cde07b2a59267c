package docs

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/service"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/redisstore"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// The placeholders of the Storage section's key table.
const (
	vendorPlaceholder = "<vendor>"
	clientPlaceholder = "<client>"
)

// fingerprints are the HMACs in token keys, written <fp> in the table.
var fingerprints = regexp.MustCompile(`\{[0-9a-f]{64}\}`)

// recordingStore is a memory store that remembers every key asked of it.
type recordingStore struct {
	store.Store
	mu   sync.Mutex
	keys map[string]bool
}

func (r *recordingStore) record(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[fingerprints.ReplaceAllString(key, "{<fp>}")] = true
}

func (r *recordingStore) Get(ctx context.Context, key string) (store.Entry, error) {
	r.record(key)
	return r.Store.Get(ctx, key)
}

func (r *recordingStore) Put(ctx context.Context, key string, e store.Entry) error {
	r.record(key)
	return r.Store.Put(ctx, key, e)
}

func (r *recordingStore) CompareAndDelete(ctx context.Context, key, accessToken string) (bool, error) {
	r.record(key)
	return r.Store.CompareAndDelete(ctx, key, accessToken)
}

// serviceKeys returns the store keys the service builds for a token it
// fetches: the token's and its negative cache entry's.
func serviceKeys(t *testing.T) []string {
	t.Helper()
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"docs-test-token","token_type":"bearer","expires_in":3600}`))
	}))
	t.Cleanup(vendor.Close)
	rec := &recordingStore{Store: store.NewMemory(0), keys: map[string]bool{}}
	svc := service.New(service.Config{
		Store:          rec,
		FingerprintKey: make([]byte, 32),
		VendorSettings: map[string]vendors.Settings{"smartdocumentor": {"token_url": vendor.URL + "/connect/token"}},
		Profiles: map[string]service.Profile{
			"p": {Vendor: "smartdocumentor", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s")}},
		},
	})
	t.Cleanup(svc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := svc.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"}); err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Sorted(maps.Keys(rec.keys))
}

// recordingShared answers every budget request at once and remembers the
// budget names it was asked for.
type recordingShared struct {
	mu    sync.Mutex
	names []string
}

func (r *recordingShared) ReserveBudget(_ context.Context, vendor string, _ float64, _ int, _ time.Duration) (time.Duration, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names = append(r.names, vendor)
	return 0, true, nil
}

// keyBuilders are the exported key builders of store/redisstore, each
// called with the table's placeholders (token keys come from the service).
// A new builder fails TestDesignRedisKeyTable until it is listed here.
func keyBuilders(t *testing.T, tokenKeys []string) map[string][]string {
	t.Helper()
	shared := &recordingShared{}
	if _, ok := budget.NewClientLimiter(shared, nil).Take(context.Background(), clientPlaceholder, 600, 300); !ok || len(shared.names) != 1 {
		t.Fatalf("budget.ClientLimiter.Take asked the shared budget %q, want one name", shared.names)
	}
	perToken := func(build func(string) string) []string {
		var keys []string
		for _, k := range tokenKeys {
			keys = append(keys, build(k))
		}
		return keys
	}
	return map[string][]string{
		"LockKey":    perToken(redisstore.LockKey),
		"GenKey":     perToken(redisstore.GenKey),
		"SpentKey":   perToken(redisstore.SpentKey),
		"BudgetKey":  {redisstore.BudgetKey(vendorPlaceholder), redisstore.BudgetKey(shared.names[0])},
		"ShareKey":   {redisstore.ShareKey(vendorPlaceholder, clientPlaceholder)},
		"WaitingKey": {redisstore.WaitingKey(vendorPlaceholder)},
		"StatusKey":  {redisstore.StatusKey("<profile>")},
		"RevokedKey": perToken(redisstore.RevokedKey),
		"OpKey": append(perToken(func(k string) string { return redisstore.OpKey(k, "<id>") }),
			redisstore.OpKey(redisstore.BudgetKey(vendorPlaceholder), "<id>")),
	}
}

// channels are store/redisstore's exported channel names.
var channels = map[string]string{
	"DefaultChannel":      redisstore.DefaultChannel,
	"DefaultLeaseChannel": redisstore.DefaultLeaseChannel,
}

// redisstoreNames parses store/redisstore's product code and returns its
// exported functions named *Key and constants named *Channel*.
func redisstoreNames(t *testing.T) (builders, channelConsts []string) {
	t.Helper()
	const dir = "../store/redisstore"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() && strings.HasSuffix(d.Name.Name, "Key") {
					builders = append(builders, d.Name.Name)
				}
			case *ast.GenDecl:
				if d.Tok != token.CONST {
					continue
				}
				for _, spec := range d.Specs {
					for _, n := range spec.(*ast.ValueSpec).Names {
						if n.IsExported() && strings.Contains(n.Name, "Channel") {
							channelConsts = append(channelConsts, n.Name)
						}
					}
				}
			}
		}
	}
	slices.Sort(builders)
	slices.Sort(channelConsts)
	return builders, channelConsts
}

// TestDesignRedisKeyTable: the Storage section's key table lists every
// Redis key the code builds (the service's token and negative cache keys,
// and what store/redisstore's builders make of them and of a vendor and a
// client), the channel table every channel, both nothing else; and the
// section names every builder.
func TestDesignRedisKeyTable(t *testing.T) {
	t.Parallel()
	text := section(t, "Storage")
	where := designDoc + ", Storage"

	builders, channelConsts := redisstoreNames(t)
	tokenKeys := serviceKeys(t)
	built := map[string]string{} // key -> what builds it
	for _, k := range tokenKeys {
		built[k] = "the service (a store key it used to fetch a token)"
	}
	calls := keyBuilders(t, slices.DeleteFunc(slices.Clone(tokenKeys), func(k string) bool { return !strings.HasSuffix(k, ":token") }))
	for _, name := range builders {
		keys, ok := calls[name]
		if !ok {
			t.Errorf("redisstore.%s is a key builder docs/rediskeys_test.go does not call: add it to keyBuilders, so the key table is checked against it", name)
		}
		for _, k := range keys {
			built[k] = "redisstore." + name
		}
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		if !slices.Contains(builders, name) {
			t.Errorf("docs/rediskeys_test.go calls redisstore.%s, which is no longer an exported function named *Key: update keyBuilders", name)
		}
	}

	keyTable := tableWith(t, where, text, "key")
	documented := map[string]bool{}
	for _, row := range keyTable.rows {
		for _, k := range codeSpans(row[0]) {
			documented[k] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(built)) {
		if !documented[k] {
			t.Errorf("%s: the key table lacks `%s`, built by %s: add a row", where, k, built[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(documented)) {
		if built[k] == "" {
			t.Errorf("%s: the key table lists `%s`, which no key builder makes: remove it, fix it to the builders' form, or, if code builds it elsewhere, give store/redisstore an exported *Key builder for it and call that in keyBuilders", where, k)
		}
	}

	channelTable := tableWith(t, where, text, "channel")
	documentedChannels := map[string]bool{}
	for _, row := range channelTable.rows {
		for _, c := range codeSpans(row[0]) {
			documentedChannels[c] = true
		}
	}
	for _, name := range channelConsts {
		c, ok := channels[name]
		if !ok {
			t.Errorf("redisstore.%s is a channel docs/rediskeys_test.go does not know: add it to channels", name)
			continue
		}
		if !documentedChannels[c] {
			t.Errorf("%s: the channel table lacks `%s` (redisstore.%s): add a row", where, c, name)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(documentedChannels)) {
		if !slices.Contains(slices.Collect(maps.Values(channels)), c) {
			t.Errorf("%s: the channel table lists `%s`, which is no channel of redisstore: remove it", where, c)
		}
	}

	// The section says which code builds the names.
	named := map[string]bool{}
	for _, span := range codeSpans(text) {
		named[strings.TrimPrefix(span, "redisstore.")] = true
	}
	for _, name := range append(slices.Clone(builders), channelConsts...) {
		if !named[name] {
			t.Errorf("%s does not name redisstore.%s: add it to the list of key and channel builders", where, name)
		}
	}
}
