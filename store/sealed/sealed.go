// Package sealed keeps tokens in a shared byte store (Redis) that must
// never hold a clear token, refresh token or secret. A Store is a
// store.Store over a Backend of opaque values, each the whole Entry sealed
// with AES-256-GCM under the Redis key as associated data; a Keyring's
// first key seals and every key opens, which is how keys rotate. Every
// value starts with the SHA-256 digest of its access token, so the backend
// compares and deletes without decrypting.
//
// The value layout and what the seal protects against are docs/design.md,
// Storage ("Sealing"); rotating the keys is docs/operations.md, Rotate
// secrets and keys.
package sealed

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
)

// KeySize is the length of an encryption key: AES-256.
const KeySize = 32

const (
	digestLen    = sha256.Size
	versionPlain = 0
	versionGCM   = 1
	keyIDLen     = 4
	headerLen    = digestLen + 1 + keyIDLen
)

// Backend holds opaque values by key until they expire; Redis in
// production. Implementations are safe for concurrent use.
type Backend interface {
	// Load returns key's value, or store.ErrNotFound.
	Load(ctx context.Context, key string) ([]byte, error)
	// Save stores a token's value under its key (store.TokenKey) until
	// expiresAt, unless the key's fence generation is newer than fence: then it
	// returns store.ErrStale. A shared backend also refuses a value whose
	// digest prefix DeleteIfPrefix named (store.ErrRevoked), and deletes
	// the negative cache entry beside the token.
	Save(ctx context.Context, key string, value []byte, expiresAt time.Time, fence uint64) error
	// SaveRejection is Save for a negative cache entry (Entry.Rejected)
	// under its key (store.NegativeKey): fenced the same way, never
	// refused as revoked, deleting nothing.
	SaveRejection(ctx context.Context, key string, value []byte, expiresAt time.Time, fence uint64) error
	// DeleteIfPrefix deletes key, atomically, only if its value starts
	// with prefix, and reports whether it did. A shared backend remembers
	// prefix as rejected either way (docs/design.md, The lease and generation protocol).
	DeleteIfPrefix(ctx context.Context, key string, prefix []byte) (bool, error)
}

// Keyring holds the encryption keys: the first seals, all open.
type Keyring struct {
	keys []ringKey
}

type ringKey struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// NewKeyring returns a keyring of keys, each KeySize bytes; keys[0] seals.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("sealed: no encryption key")
	}
	r := &Keyring{}
	seen := map[[keyIDLen]byte]int{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, &KeyError{Index: i, Len: len(k)}
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("sealed: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("sealed: key %d: %w", i, err)
		}
		id := KeyID(k)
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("sealed: keys %d and %d are the same key (or share a key id)", j, i)
		}
		seen[id] = i
		r.keys = append(r.keys, ringKey{id: id, aead: aead})
	}
	return r, nil
}

// KeyError is a key of the wrong length.
type KeyError struct {
	Index int // position in the list given to NewKeyring
	Len   int
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("sealed: key %d is %d bytes, want %d", e.Index, e.Len, KeySize)
}

// KeyID is the id a value sealed with key carries: a keyed hash, so it
// tells nothing about the key.
func KeyID(key []byte) [keyIDLen]byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("tokenbroker sealed key id v1"))
	var id [keyIDLen]byte
	copy(id[:], mac.Sum(nil))
	return id
}

func (r *Keyring) lookup(id []byte) (cipher.AEAD, bool) {
	for _, k := range r.keys {
		if string(k.id[:]) == string(id) {
			return k.aead, true
		}
	}
	return nil, false
}

// Stats are a Store's counters.
type Stats struct {
	// OpenFailures counts values that were present but could not be
	// opened (unknown key id, tampered, moved to another key, plaintext
	// under a sealing store, garbage): each was answered as a miss.
	OpenFailures uint64
}

// Store is a store.Store over a Backend, sealing every value.
type Store struct {
	backend Backend
	// ring is nil for plaintext; SetKeyring replaces it.
	ring atomic.Pointer[Keyring]
	now  func() time.Time

	openFailures atomic.Uint64
}

var _ store.Store = (*Store)(nil)

// New returns a Store sealing with ring's first key.
func New(b Backend, ring *Keyring) *Store {
	if ring == nil {
		panic("sealed: New with a nil Keyring; use NewPlaintext for cache.allow_plaintext")
	}
	s := &Store{backend: b, now: time.Now}
	s.ring.Store(ring)
	return s
}

// SetKeyring replaces the keys of a sealing Store (a configuration reload
// of cache.encryption_keys); values already sealed open as long as ring
// still holds their key. A plaintext Store stays plaintext.
func (s *Store) SetKeyring(ring *Keyring) {
	if ring == nil || s.ring.Load() == nil {
		return
	}
	s.ring.Store(ring)
}

// NewPlaintext returns a Store that writes entries unencrypted, for
// cache.allow_plaintext: the backend then holds clear tokens. It refuses
// sealed values (it has no key to open them).
func NewPlaintext(b Backend) *Store {
	return &Store{backend: b, now: time.Now}
}

// Stats returns the counters.
func (s *Store) Stats() Stats { return Stats{OpenFailures: s.openFailures.Load()} }

// Digest is the compare-and-delete tag of an access token: its SHA-256.
func Digest(accessToken string) []byte {
	sum := sha256.Sum256([]byte(accessToken))
	return sum[:]
}

// Get implements store.Store. A value that does not open is a miss.
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	value, err := s.backend.Load(ctx, key)
	if err != nil {
		return store.Entry{}, err
	}
	e, err := s.open(key, value)
	if err != nil {
		s.openFailures.Add(1)
		return store.Entry{}, store.ErrNotFound
	}
	if !e.ExpiresAt.After(s.now()) {
		return store.Entry{}, store.ErrNotFound
	}
	return e, nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, e store.Entry) error {
	if !e.ExpiresAt.After(s.now()) {
		return nil
	}
	value, err := s.seal(key, e)
	if err != nil {
		return err
	}
	if e.Rejected != nil {
		return s.backend.SaveRejection(ctx, key, value, e.ExpiresAt, e.Fence)
	}
	return s.backend.Save(ctx, key, value, e.ExpiresAt, e.Fence)
}

// CompareAndDelete implements store.Store by comparing digests in the
// backend.
func (s *Store) CompareAndDelete(ctx context.Context, key, accessToken string) (bool, error) {
	return s.backend.DeleteIfPrefix(ctx, key, Digest(accessToken))
}

func (s *Store) seal(key string, e store.Entry) ([]byte, error) {
	plain, err := json.Marshal(wireEntry{
		AccessToken:  e.AccessToken,
		TokenType:    e.TokenType,
		Scope:        e.Scope,
		RefreshToken: e.RefreshToken,
		IssuedAt:     unixNano(e.IssuedAt),
		ExpiresAt:    unixNano(e.ExpiresAt),
		FetchedAt:    unixNano(e.FetchedAt),
		Fence:        e.Fence,
		Rejected:     e.Rejected,
	})
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	digest := Digest(e.AccessToken)
	ring := s.ring.Load()
	if ring == nil {
		out := make([]byte, 0, digestLen+1+len(plain))
		out = append(out, digest...)
		out = append(out, versionPlain)
		return append(out, plain...), nil
	}
	k := ring.keys[0]
	out := make([]byte, headerLen, headerLen+k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	copy(out, digest)
	out[digestLen] = versionGCM
	copy(out[digestLen+1:], k.id[:])
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("sealed: nonce: %w", err)
	}
	ad := associatedData(out[:headerLen], key)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plain, ad), nil
}

var errUnopenable = errors.New("sealed: value does not open")

// plainBuffers hold the plaintext of values being opened: decodeWire
// copies what it keeps, so a buffer serves the next open instead of
// becoming garbage on every read of the shared level.
var plainBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledPlain bounds the buffers kept in plainBuffers: a token
// response is a few KiB at most, and an outsized one is not kept.
const maxPooledPlain = 16 << 10

// putPlain wipes the plaintext in buf (a token), and keeps buf for the
// next open unless it outgrew maxPooledPlain.
func putPlain(buf *[]byte) {
	clear(*buf)
	if cap(*buf) <= maxPooledPlain {
		plainBuffers.Put(buf)
	}
}

func (s *Store) open(key string, value []byte) (store.Entry, error) {
	if len(value) < digestLen+1 {
		return store.Entry{}, errUnopenable
	}
	digest := value[:digestLen]
	var plain []byte
	ring := s.ring.Load()
	switch version := value[digestLen]; {
	case version == versionPlain && ring == nil:
		plain = value[digestLen+1:]
	case version == versionGCM && ring != nil && len(value) >= headerLen:
		aead, ok := ring.lookup(value[digestLen+1 : headerLen])
		if !ok || len(value) < headerLen+aead.NonceSize()+aead.Overhead() {
			return store.Entry{}, errUnopenable
		}
		nonce := value[headerLen : headerLen+aead.NonceSize()]
		buf := plainBuffers.Get().(*[]byte)
		defer putPlain(buf)
		var err error
		plain, err = aead.Open((*buf)[:0], nonce, value[headerLen+aead.NonceSize():], associatedData(value[:headerLen], key))
		if err != nil {
			return store.Entry{}, errUnopenable
		}
		*buf = plain
	default:
		return store.Entry{}, errUnopenable
	}
	w, tokenSum, err := decodeWire(plain)
	if err != nil || (w.AccessToken == "") == (w.Rejected == nil) {
		return store.Entry{}, errUnopenable
	}
	// The digest is authenticated for sealed values; for plaintext ones
	// this is the only check that the tag matches the token.
	if !hmac.Equal(digest, tokenSum[:]) {
		return store.Entry{}, errUnopenable
	}
	return store.Entry{
		AccessToken:  w.AccessToken,
		TokenType:    w.TokenType,
		Scope:        w.Scope,
		RefreshToken: w.RefreshToken,
		IssuedAt:     fromUnixNano(w.IssuedAt),
		ExpiresAt:    fromUnixNano(w.ExpiresAt),
		FetchedAt:    fromUnixNano(w.FetchedAt),
		Fence:        w.Fence,
		Rejected:     w.Rejected,
	}, nil
}

// unixNano encodes t, the zero time as 0 (its UnixNano is undefined).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// associatedData binds a sealed value to its header (digest, version, key
// id) and to the backend key it is stored under.
func associatedData(header []byte, key string) []byte {
	ad := make([]byte, 0, len(header)+8+len(key))
	ad = append(ad, header...)
	ad = binary.BigEndian.AppendUint64(ad, uint64(len(key)))
	return append(ad, key...)
}
