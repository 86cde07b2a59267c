package docs

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/service"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// The placeholders of the Storage section's key table.
const (
	fingerprintPlaceholder = "<fp>"
	vendorPlaceholder      = "<vendor>"
	clientPlaceholder      = "<client>"
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

// keyFile is the one file that builds every Redis key and channel name.
const keyFile = "../store/keys.go"

// keyBuilders are the exported key builders of store/keys.go, each called
// with the table's placeholders. A new builder fails
// TestDesignRedisKeyTable until it is listed here.
func keyBuilders(t *testing.T) map[string][]string {
	t.Helper()
	shared := &recordingShared{}
	if _, ok := budget.NewClientLimiter(shared, nil).Take(context.Background(), clientPlaceholder, 600, 300); !ok || len(shared.names) != 1 {
		t.Fatalf("budget.ClientLimiter.Take asked the shared budget %q, want one name", shared.names)
	}
	tokenKey := store.TokenKey(fingerprintPlaceholder)
	return map[string][]string{
		"TokenKey":    {tokenKey},
		"NegativeKey": {store.NegativeKey(tokenKey)},
		"LeaseKey":    {store.LeaseKey(tokenKey)},
		"FenceKey":    {store.FenceKey(tokenKey)},
		"SpentKey":    {store.SpentKey(tokenKey)},
		"RevokedKey":  {store.RevokedKey(tokenKey)},
		"OpKey":       {store.OpKey(tokenKey, "<id>")},
		"BudgetKey":   {store.BudgetKey(vendorPlaceholder), store.BudgetKey(shared.names[0])},
		"BudgetOpKey": {store.BudgetOpKey(vendorPlaceholder, "<id>")},
		"ShareKey":    {store.ShareKey(vendorPlaceholder, clientPlaceholder)},
		"WaitingKey":  {store.WaitingKey(vendorPlaceholder)},
		"StatusKey":   {store.StatusKey("<profile>")},
	}
}

// channels are store/keys.go's exported channel names.
var channels = map[string]string{
	"InvalidationChannel": store.InvalidationChannel,
	"LeaseChannel":        store.LeaseChannel,
}

// keyFileNames parses store/keys.go and returns its exported functions
// named *Key and constants named *Channel*.
func keyFileNames(t *testing.T) (builders, channelConsts []string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), keyFile, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	{
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
// Redis key the code builds (store/keys.go's builders, called with the
// table's placeholders, and the keys the service used to fetch a token),
// the channel table every channel, both nothing else; and the section
// names every builder.
func TestDesignRedisKeyTable(t *testing.T) {
	t.Parallel()
	text := section(t, "Storage")
	where := designDoc + ", Storage"

	builders, channelConsts := keyFileNames(t)
	built := map[string]string{} // key -> what builds it
	for _, k := range serviceKeys(t) {
		built[k] = "the service (a store key it used to fetch a token)"
	}
	calls := keyBuilders(t)
	for _, name := range builders {
		keys, ok := calls[name]
		if !ok {
			t.Errorf("store.%s is a key builder docs/rediskeys_test.go does not call: add it to keyBuilders, so the key table is checked against it", name)
		}
		for _, k := range keys {
			built[k] = "store." + name
		}
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		if !slices.Contains(builders, name) {
			t.Errorf("docs/rediskeys_test.go calls store.%s, which is no longer an exported function named *Key in %s: update keyBuilders", name, keyFile)
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
			t.Errorf("%s: the key table lists `%s`, which no key builder makes: remove it, fix it to the builders' form, or, if code builds it elsewhere, give %s an exported *Key builder for it and call that in keyBuilders", where, k, keyFile)
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
			t.Errorf("store.%s is a channel docs/rediskeys_test.go does not know: add it to channels", name)
			continue
		}
		if !documentedChannels[c] {
			t.Errorf("%s: the channel table lacks `%s` (store.%s): add a row", where, c, name)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(documentedChannels)) {
		if !slices.Contains(slices.Collect(maps.Values(channels)), c) {
			t.Errorf("%s: the channel table lists `%s`, which is no channel of %s: remove it", where, c, keyFile)
		}
	}

	// The section says which code builds the names.
	named := map[string]bool{}
	for _, span := range codeSpans(text) {
		named[strings.TrimPrefix(span, "store.")] = true
	}
	for _, name := range append(slices.Clone(builders), channelConsts...) {
		if !named[name] {
			t.Errorf("%s does not name store.%s: add it to the list of key and channel builders", where, name)
		}
	}
}

// wireSuffixes are the suffixes of a token's keys as they are on the wire;
// product code names them only through store/keys.go's builders.
var wireSuffixes = []string{":token", ":neg", ":lock", ":gen", ":rt", ":revoked", ":op:"}

// TestKeysBuiltInOnePlace: no product Go file but store/keys.go has a
// string literal with the key prefix, or one that is or ends in a token
// key's suffix: every key and channel name goes through the builders, so
// the key table's check above covers them all.
func TestKeysBuiltInOnePlace(t *testing.T) {
	t.Parallel()
	root := ".."
	keyFilePath := filepath.Clean(keyFile)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == ".git" || name == "node_modules" || name == "testdata" || path == filepath.Join(root, "gen") {
				return filepath.SkipDir
			}
			return nil
		}
		if filepath.Ext(path) != ".go" || strings.HasSuffix(path, "_test.go") || filepath.Clean(path) == keyFilePath {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			if strings.Contains(v, store.KeyPrefix) || slices.ContainsFunc(wireSuffixes, func(suffix string) bool { return strings.HasSuffix(v, suffix) }) {
				t.Errorf("%s: the string %q names a Redis key or channel: build it with %s", fset.Position(lit.Pos()), v, keyFile)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
