package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// Defaults of a Dispatcher.
const (
	// DefaultQueueSize bounds the events waiting for one sink; beyond it
	// new events for that sink are dropped (and counted).
	DefaultQueueSize = 256
	// DefaultMaxAttempts is how often one event is tried on one sink.
	DefaultMaxAttempts = 5
	// DefaultBackoff is the wait after the first failed attempt; it
	// doubles after each (200ms, 400ms, 800ms, 1.6s).
	DefaultBackoff = 200 * time.Millisecond
	// DefaultTimeout bounds one attempt.
	DefaultTimeout = 5 * time.Second
	// Source is the CloudEvents "source" of every event.
	Source = "urn:tokenbroker"
	// maxAnswerBytes bounds what is read of a sink's answer.
	maxAnswerBytes = 64 << 10
)

// Sink is one receiver of events (config events.sinks).
type Sink struct {
	// URL receives a POST per event (http or https).
	URL string
	// Headers are sent with every event (e.g. authorization); they may be
	// secret, and are never logged.
	Headers map[string]string
}

// Options configure a Dispatcher.
type Options struct {
	Sinks       []Sink
	QueueSize   int
	MaxAttempts int
	Backoff     time.Duration
	Timeout     time.Duration
	// Transport sends the requests; nil means a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Dispatcher sends events to its sinks: one bounded queue and one sender
// goroutine per sink, so a sink that is down delays only its own events.
// Publish never blocks. Close stops the senders; events still queued are
// dropped.
type Dispatcher struct {
	sinks  []*sinkSender
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// sinkSender is one sink's queue and client.
type sinkSender struct {
	name    string // scheme and host, for logs (never the headers)
	queue   chan Event
	client  cloudevents.Client
	opts    Options
	log     *slog.Logger
	dropped atomic.Uint64
	sent    atomic.Uint64
	failed  atomic.Uint64
}

// New checks the sinks and starts their senders.
func New(opts Options) (*Dispatcher, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	d := &Dispatcher{}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for i, sk := range opts.Sinks {
		u, err := url.Parse(sk.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("events.sinks[%d].url: want an http or https URL", i)
		}
		popts := []cehttp.Option{
			cehttp.WithTarget(sk.URL),
			cehttp.WithClient(http.Client{Transport: limitAnswers{opts.Transport}, Timeout: opts.Timeout}),
		}
		for k, v := range sk.Headers {
			popts = append(popts, cehttp.WithHeader(k, v))
		}
		p, err := cehttp.New(popts...)
		if err != nil {
			return nil, fmt.Errorf("events.sinks[%d]: %w", i, err)
		}
		c, err := cloudevents.NewClient(p)
		if err != nil {
			return nil, fmt.Errorf("events.sinks[%d]: %w", i, err)
		}
		d.sinks = append(d.sinks, &sinkSender{
			name:   u.Scheme + "://" + u.Host,
			queue:  make(chan Event, opts.QueueSize),
			client: c,
			opts:   opts,
			log:    opts.Logger,
		})
	}
	for _, s := range d.sinks {
		d.wg.Go(func() { s.run(d.ctx) })
	}
	return d, nil
}

// Publish queues e for every sink without blocking; it reports false if a
// sink's queue was full (that sink will not get e).
func (d *Dispatcher) Publish(e Event) bool {
	ok := true
	for _, s := range d.sinks {
		select {
		case s.queue <- e:
		default:
			s.dropped.Add(1)
			ok = false
		}
	}
	return ok
}

// Stats are a sink's counters.
type Stats struct {
	Sent, Failed, Dropped uint64
}

// Stats returns each sink's counters, in configuration order.
func (d *Dispatcher) Stats() []Stats {
	out := make([]Stats, len(d.sinks))
	for i, s := range d.sinks {
		out[i] = Stats{Sent: s.sent.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load()}
	}
	return out
}

// Close stops the senders and waits for them; queued events are dropped.
func (d *Dispatcher) Close() {
	d.cancel()
	d.wg.Wait()
}

func (s *sinkSender) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-s.queue:
			s.deliver(ctx, e)
		}
	}
}

// deliver tries e up to MaxAttempts times with doubling waits.
func (s *sinkSender) deliver(ctx context.Context, e Event) {
	ce, err := toCloudEvent(e)
	if err != nil {
		s.failed.Add(1)
		s.log.Error("event not encodable", "sink", s.name, "type", e.Type, "err", err)
		return
	}
	wait := s.opts.Backoff
	for attempt := 1; ; attempt++ {
		res := s.client.Send(ctx, ce)
		if cloudevents.IsACK(res) {
			s.sent.Add(1)
			return
		}
		if attempt >= s.opts.MaxAttempts || ctx.Err() != nil {
			s.failed.Add(1)
			s.log.Warn("event not delivered", "sink", s.name, "type", e.Type, "profile", e.Profile, "attempts", attempt, "err", describe(res))
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.failed.Add(1)
			return
		case <-t.C:
		}
		wait *= 2
	}
}

// describe is a failed send for the log: the sink's HTTP status, or the
// transport error, never the sink's answer (which may echo headers).
func describe(res error) string {
	var hr *cehttp.Result
	if cloudevents.ResultAs(res, &hr) {
		return fmt.Sprintf("HTTP %d", hr.StatusCode)
	}
	var ue *url.Error
	if errors.As(res, &ue) {
		return ue.Err.Error()
	}
	return "send failed"
}

// payload is an event's data.
type payload struct {
	Profile         string     `json:"profile"`
	Vendor          string     `json:"vendor"`
	State           string     `json:"state"`
	PreviousState   string     `json:"previous_state"`
	Reason          string     `json:"reason,omitempty"`
	Replica         string     `json:"replica"`
	Time            time.Time  `json:"time"`
	RememberedUntil *time.Time `json:"remembered_until,omitempty"`
}

func toCloudEvent(e Event) (cloudevents.Event, error) {
	ce := cloudevents.NewEvent()
	ce.SetID(e.ID)
	ce.SetSource(Source)
	ce.SetType(e.Type)
	ce.SetSubject(e.Profile)
	ce.SetTime(e.Time)
	p := payload{Profile: e.Profile, Vendor: e.Vendor, State: e.State, PreviousState: e.PreviousState,
		Reason: e.Reason, Replica: e.Replica, Time: e.Time}
	if !e.RememberedUntil.IsZero() {
		p.RememberedUntil = &e.RememberedUntil
	}
	if err := ce.SetData(cloudevents.ApplicationJSON, p); err != nil {
		return ce, err
	}
	return ce, ce.Validate()
}

// limitAnswers bounds what is read of a sink's answer: the SDK reads a
// failed answer's whole body into its error.
type limitAnswers struct{ next http.RoundTripper }

func (l limitAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{io.LimitReader(resp.Body, maxAnswerBytes), resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}
