package events

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// received is one request a sink got.
type received struct {
	header http.Header
	body   []byte
}

// recordingSink answers the first failFirst requests 503, then 202.
type recordingSink struct {
	mu        sync.Mutex
	failFirst int
	got       []received
	answered  int
}

func (s *recordingSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answered++
	if s.answered <= s.failFirst {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.got = append(s.got, received{r.Header.Clone(), body})
	w.WriteHeader(http.StatusAccepted)
}

func (s *recordingSink) deliveries() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

func TestDispatcherDelivers(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	ev := Event{ID: "acme:1", Type: TypeRejected, Profile: "acme", Vendor: "saasu", State: "rejected",
		PreviousState: "working", Reason: "invalid_grant", Replica: "host/1", Time: at, RememberedUntil: at.Add(10 * time.Second)}
	tests := []struct {
		name          string
		failFirst     int
		attempts      int
		wantDelivered bool
	}{
		{"first attempt", 0, 3, true},
		{"after two failures", 2, 3, true},
		{"attempts spent", 3, 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sink := &recordingSink{failFirst: tc.failFirst}
			srv := httptest.NewServer(sink)
			t.Cleanup(srv.Close)
			d, err := New(Options{
				Sinks:       []Sink{{URL: srv.URL + "/hook", Headers: map[string]string{"Authorization": "Bearer sink-secret"}}},
				MaxAttempts: tc.attempts, Backoff: time.Millisecond, Logger: quiet,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(d.Close)
			if !d.Publish(ev) {
				t.Fatal("Publish refused an event with an empty queue")
			}
			for range 500 {
				if st := d.Stats()[0]; st.Sent+st.Failed == 1 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			st := d.Stats()[0]
			if delivered := st.Sent == 1; delivered != tc.wantDelivered || st.Sent+st.Failed != 1 {
				t.Fatalf("stats = %+v, want delivered %v", st, tc.wantDelivered)
			}
			got := sink.deliveries()
			if !tc.wantDelivered {
				if len(got) != 0 {
					t.Fatalf("delivered %d", len(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("deliveries = %d, want 1", len(got))
			}
			h := got[0].header
			for k, want := range map[string]string{
				"Ce-Id": "acme:1", "Ce-Type": TypeRejected, "Ce-Source": Source, "Ce-Subject": "acme",
				"Ce-Specversion": "1.0", "Content-Type": "application/json", "Authorization": "Bearer sink-secret",
			} {
				if h.Get(k) != want {
					t.Errorf("header %s = %q, want %q", k, h.Get(k), want)
				}
			}
			var p map[string]any
			if err := json.Unmarshal(got[0].body, &p); err != nil {
				t.Fatal(err)
			}
			if p["profile"] != "acme" || p["vendor"] != "saasu" || p["state"] != "rejected" || p["previous_state"] != "working" ||
				p["reason"] != "invalid_grant" || p["remembered_until"] != "2026-12-07T03:00:10Z" {
				t.Fatalf("data = %s", got[0].body)
			}
			if strings.Contains(string(got[0].body), "sink-secret") {
				t.Fatal("the data carries the sink's header")
			}
		})
	}
}

// TestPublishNeverBlocks: with the sink stuck, Publish keeps returning at
// once and reports the events it had to drop once the queue is full.
func TestPublishNeverBlocks(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	const queue = 4
	d, err := New(Options{Sinks: []Sink{{URL: srv.URL}}, QueueSize: queue, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	// The sender holds one event, the queue four: by the sixth at most,
	// Publish must refuse rather than wait.
	for range queue + 10 {
		if !d.Publish(Event{ID: "x", Type: TypeFailing, Profile: "p", Time: time.Now()}) {
			refused++
		}
	}
	if refused < 10-1 {
		t.Fatalf("refused %d of %d events with a stuck sink and a queue of %d", refused, queue+10, queue)
	}
	if got := d.Stats()[0].Dropped; got != uint64(refused) {
		t.Fatalf("dropped = %d, want %d", got, refused)
	}
	close(release)
	d.Close()
}

func TestSinkURLChecked(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://x/y", "not a url", "http://"} {
		if _, err := New(Options{Sinks: []Sink{{URL: u}}}); err == nil || !strings.Contains(err.Error(), "events.sinks[0].url") {
			t.Errorf("url %q: err = %v", u, err)
		}
	}
}

// syncBuf is a log destination safe for the sender's goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFailureLogNamesNoSecret: a sink that answers with the request's
// own headers (as some echo their input) is logged by its host and HTTP
// status, never its answer or the configured headers.
func TestFailureLogNamesNoSecret(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad auth "+r.Header.Get("Authorization"), http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	var logs syncBuf
	d, err := New(Options{
		Sinks:       []Sink{{URL: srv.URL + "/hook?token=query-secret", Headers: map[string]string{"Authorization": "Bearer header-secret"}}},
		MaxAttempts: 2, Backoff: time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	d.Publish(Event{ID: "p:1", Type: TypeFailing, Profile: "p", Vendor: "saasu", Time: time.Now()})
	for range 500 {
		if d.Stats()[0].Failed == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if d.Stats()[0].Failed != 1 || !strings.Contains(out, "event not delivered") || !strings.Contains(out, "HTTP 500") {
		t.Fatalf("stats %+v, log:\n%s", d.Stats()[0], out)
	}
	for _, secret := range []string{"header-secret", "query-secret", "bad auth"} {
		if strings.Contains(out, secret) {
			t.Fatalf("the log contains %q:\n%s", secret, out)
		}
	}
}
