package chaos

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Kind is a kind of fault the nemesis injects.
type Kind string

// The faults of docs/design.md, The chaos run.
const (
	// ReplicaKill: SIGKILL a broker replica, restart it after For.
	ReplicaKill Kind = "replica_kill"
	// ReplicaPause: SIGSTOP a replica for For (longer than the lease
	// TTL), then SIGCONT.
	ReplicaPause Kind = "replica_pause"
	// RedisPause: SIGSTOP the Redis master for For (shorter than
	// Sentinel's down-after: no failover).
	RedisPause Kind = "redis_pause"
	// Failover: SENTINEL FAILOVER; it ends when the Sentinel names the
	// new master.
	Failover Kind = "failover"
	// RedisRestart: SIGKILL the Redis master and start it again empty
	// (its replica resynchronises from it: the data is lost).
	RedisRestart Kind = "redis_restart_empty"
	// NetLatency, NetReset, NetBlackhole: the brokers' (and Sentinel's)
	// connections to Redis, through the Proxy, are slowed by Latency,
	// reset and refused, or silently dropped, for For.
	NetLatency   Kind = "net_latency"
	NetReset     Kind = "net_reset"
	NetBlackhole Kind = "net_blackhole"
	// Vendor5xx: the Target vendor answers 503 for For.
	Vendor5xx Kind = "vendor_5xx"
	// VendorReject: the Target vendor rejects every credential (401
	// invalid_client) for For, then accepts them again.
	VendorReject Kind = "vendor_reject"
	// VendorSlow: every vendor answers after Latency, for For.
	VendorSlow Kind = "vendor_slow"
)

// Fault is one planned fault and, once carried out, when it really began
// and ended.
type Fault struct {
	Kind Kind `json:"kind"`
	// Target is the replica index (ReplicaKill, ReplicaPause) or the
	// vendor id (Vendor5xx, VendorReject); empty otherwise.
	Target  string        `json:"target,omitempty"`
	At      time.Duration `json:"at"`  // planned start, from the run's start
	For     time.Duration `json:"for"` // planned length
	Latency time.Duration `json:"latency,omitempty"`
	Start   time.Time     `json:"start,omitzero"`
	End     time.Time     `json:"end,omitzero"`
	// Note says what did not go as planned (a failover the Sentinel
	// refused).
	Note string `json:"note,omitempty"`
}

func (f Fault) String() string {
	s := string(f.Kind)
	if f.Target != "" {
		s += "(" + f.Target + ")"
	}
	s += fmt.Sprintf(" at %v for %v", f.At.Round(time.Millisecond), f.For.Round(time.Millisecond))
	if f.Latency > 0 {
		s += fmt.Sprintf(" latency %v", f.Latency.Round(time.Millisecond))
	}
	if f.Note != "" {
		s += " (" + f.Note + ")"
	}
	return s
}

// resource is what a fault takes: two faults of one resource never
// overlap (a paused replica is not killed too), faults of different ones
// may.
func (f Fault) resource() string {
	switch f.Kind {
	case ReplicaKill, ReplicaPause:
		return "replica:" + f.Target
	case RedisPause, Failover, RedisRestart:
		return "redis"
	case NetLatency, NetReset, NetBlackhole:
		return "net"
	case Vendor5xx, VendorReject:
		return "vendor:" + f.Target
	case VendorSlow:
		return "vendor-latency"
	}
	return string(f.Kind)
}

// PlanOptions shape a schedule.
type PlanOptions struct {
	Replicas int
	Vendors  []string
	// LeaseTTL is the brokers' lease TTL: replica pauses last longer.
	LeaseTTL time.Duration
	// Quiet is how long before the end no fault is active (recovery
	// before the checker's last look); default 4s.
	Quiet time.Duration
}

// weights say how often each kind is drawn.
var weights = []struct {
	kind   Kind
	weight int
}{
	{ReplicaKill, 2}, {ReplicaPause, 3}, {RedisPause, 2}, {Failover, 1}, {RedisRestart, 1},
	{NetLatency, 2}, {NetReset, 2}, {NetBlackhole, 2},
	{Vendor5xx, 2}, {VendorReject, 1}, {VendorSlow, 2},
}

// Plan derives the nemesis schedule of a run of length d from seed: the
// same seed and options give the same faults at the same offsets, so a
// failing seed replays its schedule. Faults start every 0.8-3 s; a fault
// is dropped when its resource is still taken; at most Replicas-1
// replicas are down (killed or paused) at once, so some path stays.
func Plan(seed int64, d time.Duration, o PlanOptions) []Fault {
	if o.Quiet <= 0 {
		o.Quiet = 4 * time.Second
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6368616f73)) // "chaos"
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	total := 0
	for _, w := range weights {
		total += w.weight
	}
	var plan []Fault
	busyUntil := map[string]time.Duration{}
	for at := between(time.Second, 2*time.Second); ; at += between(800*time.Millisecond, 3*time.Second) {
		n := rng.IntN(total)
		var kind Kind
		for _, w := range weights {
			if n -= w.weight; n < 0 {
				kind = w.kind
				break
			}
		}
		f := Fault{Kind: kind, At: at}
		switch kind {
		case ReplicaKill:
			f.Target = fmt.Sprint(rng.IntN(o.Replicas))
			f.For = between(300*time.Millisecond, 2*time.Second)
		case ReplicaPause:
			f.Target = fmt.Sprint(rng.IntN(o.Replicas))
			f.For = between(o.LeaseTTL+500*time.Millisecond, o.LeaseTTL+2500*time.Millisecond)
		case RedisPause:
			f.For = between(500*time.Millisecond, 2500*time.Millisecond)
		case Failover:
			f.For = 0 // ends when the Sentinel names the new master
		case RedisRestart:
			f.For = 0 // ends when the new process answers
		case NetLatency:
			f.For = between(time.Second, 3*time.Second)
			f.Latency = between(20*time.Millisecond, 300*time.Millisecond)
		case NetReset:
			f.For = between(200*time.Millisecond, time.Second)
		case NetBlackhole:
			f.For = between(300*time.Millisecond, 2*time.Second)
		case Vendor5xx:
			f.Target = o.Vendors[rng.IntN(len(o.Vendors))]
			f.For = between(300*time.Millisecond, 2*time.Second)
		case VendorReject:
			f.Target = o.Vendors[rng.IntN(len(o.Vendors))]
			f.For = between(300*time.Millisecond, 1500*time.Millisecond)
		case VendorSlow:
			f.For = between(time.Second, 3*time.Second)
			f.Latency = between(200*time.Millisecond, time.Second)
		}
		// Room for a failover or restart to finish, too.
		if at+f.For+o.Quiet+5*time.Second > d {
			break
		}
		if at < busyUntil[f.resource()] || (f.resource() != "redis" && isReplica(f) && replicasDown(plan, at, at+f.For) >= o.Replicas-1) {
			continue
		}
		busy := f.For
		if f.Kind == Failover || f.Kind == RedisRestart {
			busy = 8 * time.Second // the Sentinel settles
		}
		busyUntil[f.resource()] = at + busy + 200*time.Millisecond
		plan = append(plan, f)
	}
	return plan
}

func isReplica(f Fault) bool { return f.Kind == ReplicaKill || f.Kind == ReplicaPause }

// replicasDown is the most replica faults of plan active at once within
// [from, to].
func replicasDown(plan []Fault, from, to time.Duration) int {
	down := 0
	for _, f := range plan {
		if isReplica(f) && f.At < to && f.At+f.For+time.Second > from {
			down++
		}
	}
	return down
}
