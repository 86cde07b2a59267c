package tiered

import "time"

// maxDeletionsPerKey bounds the tokens remembered for one key; past it
// the one expiring first is forgotten.
const maxDeletionsPerKey = 8

// deletions remembers access tokens per key until a deadline: the
// compare-and-deletes the shared level missed (Store.pending), and the
// ones it confirmed, against a failover or restart that loses them
// (Store.buried). A key may hold several: each invalidation names its own
// token, and a later one must not make this replica forget an earlier
// one (it would serve that token again when the shared level still holds
// it). At most MaxPendingDeletes tokens in all. Not safe for concurrent
// use: Store.pendingMu guards both.
type deletions struct {
	byKey map[string][]pendingDelete
	n     int
}

// pendingDelete is one remembered deletion.
type pendingDelete struct {
	accessToken string
	until       time.Time
}

func newDeletions() deletions {
	return deletions{byKey: make(map[string][]pendingDelete)}
}

// add remembers token under key until until (replacing an earlier
// deadline of the same token).
func (d *deletions) add(key, token string, until, now time.Time) {
	list := d.byKey[key]
	for i, p := range list {
		if p.accessToken == token {
			list[i].until = until
			return
		}
	}
	if d.n >= MaxPendingDeletes {
		d.sweep(now)
		list = d.byKey[key]
	}
	if len(list) >= maxDeletionsPerKey {
		first := 0
		for i, p := range list {
			if p.until.Before(list[first].until) {
				first = i
			}
		}
		list = append(list[:first], list[first+1:]...)
		d.n--
	}
	d.byKey[key] = append(list, pendingDelete{accessToken: token, until: until})
	d.n++
}

// sweep drops what has expired and, if that is not enough, whole keys
// until there is room for one more token.
func (d *deletions) sweep(now time.Time) {
	for key, list := range d.byKey {
		kept := list[:0]
		for _, p := range list {
			if p.until.After(now) {
				kept = append(kept, p)
			}
		}
		d.n -= len(list) - len(kept)
		d.set(key, kept)
	}
	for key, list := range d.byKey {
		if d.n < MaxPendingDeletes {
			return
		}
		d.n -= len(list)
		delete(d.byKey, key)
	}
}

// get returns token's deadline under key, if it is remembered and has
// not passed.
func (d *deletions) get(key, token string, now time.Time) (time.Time, bool) {
	for _, p := range d.byKey[key] {
		if p.accessToken == token {
			if !p.until.After(now) {
				d.remove(key, token)
				return time.Time{}, false
			}
			return p.until, true
		}
	}
	return time.Time{}, false
}

// remove forgets token under key.
func (d *deletions) remove(key, token string) {
	list := d.byKey[key]
	for i, p := range list {
		if p.accessToken == token {
			d.n--
			d.set(key, append(list[:i], list[i+1:]...))
			return
		}
	}
}

func (d *deletions) set(key string, list []pendingDelete) {
	if len(list) == 0 {
		delete(d.byKey, key)
		return
	}
	d.byKey[key] = list
}

// all returns every remembered deletion, by key.
func (d *deletions) all() map[string][]pendingDelete {
	out := make(map[string][]pendingDelete, len(d.byKey))
	for key, list := range d.byKey {
		out[key] = append([]pendingDelete(nil), list...)
	}
	return out
}

// len is the number of tokens remembered.
func (d *deletions) len() int { return d.n }
