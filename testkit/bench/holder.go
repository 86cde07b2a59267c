package bench

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// holderAndWaiters sends req to holder, and once its vendor request has
// reached the simulator, to churnWaiters callers spread over others; then
// runs crash (if any). It returns when each was answered.
func holderAndWaiters(ctx context.Context, sim *vendorsim.Sim, vendor string, holder tokenbrokerv1.TokenServiceClient, others []tokenbrokerv1.TokenServiceClient, req *tokenbrokerv1.GetTokenRequest, crash func()) (time.Time, []time.Time, error) {
	return waitOnHolder(ctx, sim, vendor, grpcCallers(holder, others), req, holderRound{waiters: churnWaiters, crash: crash})
}

// caller makes one GetToken call, over gRPC or REST.
type caller func(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) error

// fleetCallers are the lease holder's caller and the waiters' replicas.
type fleetCallers struct {
	holder caller
	others []caller
}

func grpcCaller(c tokenbrokerv1.TokenServiceClient) caller {
	return func(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) error {
		_, err := c.GetToken(ctx, req, grpc.WaitForReady(true))
		return err
	}
}

func grpcCallers(holder tokenbrokerv1.TokenServiceClient, others []tokenbrokerv1.TokenServiceClient) fleetCallers {
	fc := fleetCallers{holder: grpcCaller(holder)}
	for _, o := range others {
		fc.others = append(fc.others, grpcCaller(o))
	}
	return fc
}

// restCaller POSTs the request to base's /v1/token.
func restCaller(client *http.Client, base string) caller {
	url := base + "/v1/token"
	return func(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) error {
		body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
		if err != nil {
			return err
		}
		return postOK(ctx, client, url, body)
	}
}

// holderRound shapes one waitOnHolder round.
type holderRound struct {
	// waiters callers start delay after the holder's vendor request
	// reached the simulator.
	waiters int
	delay   time.Duration
	// crash, if set, runs once the waiters have started (it kills the
	// holder: no holder's answer time is returned).
	crash func()
	// settled, if set, runs once the waiters have started, while they
	// wait (it may block, not past the holder's answer).
	settled func()
}

// waitOnHolder sends req to fc.holder, and round.delay after its vendor
// request has reached the simulator, to round.waiters callers spread over
// fc.others; then runs round.crash or round.settled. It returns when each
// was answered (the holder's time is zero after a crash).
func waitOnHolder(ctx context.Context, sim *vendorsim.Sim, vendor string, fc fleetCallers, req *tokenbrokerv1.GetTokenRequest, round holderRound) (time.Time, []time.Time, error) {
	waiters, delay, crash := round.waiters, round.delay, round.crash
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	before := sim.Requests(vendor)
	holderDone := make(chan time.Time, 1)
	go func() {
		_ = fc.holder(ctx, req)
		holderDone <- time.Now()
	}()
	for sim.Requests(vendor) == before {
		if ctx.Err() != nil {
			return time.Time{}, nil, errors.New("the holder's vendor request never came")
		}
		time.Sleep(time.Millisecond)
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	answered := make([]time.Time, waiters)
	errs := make([]error, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fc.others[i%len(fc.others)](ctx, req)
			answered[i] = time.Now()
		}()
	}
	if crash != nil {
		crash()
	}
	if round.settled != nil {
		round.settled()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return time.Time{}, nil, err
	}
	var holderAt time.Time
	if crash == nil {
		holderAt = <-holderDone
	}
	return holderAt, answered, nil
}

// holderAndWaitersN is holderAndWaiters with waiters callers.
func holderAndWaitersN(ctx context.Context, sim *vendorsim.Sim, vendor string, holder tokenbrokerv1.TokenServiceClient, others []tokenbrokerv1.TokenServiceClient, req *tokenbrokerv1.GetTokenRequest, waiters int) (time.Time, []time.Time, error) {
	return waitOnHolder(ctx, sim, vendor, grpcCallers(holder, others), req, holderRound{waiters: waiters})
}
