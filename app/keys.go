package app

// The keys derived from the configuration (docs/design.md, Storage):
// the keyring that seals Redis values and the HMAC key that names cache
// entries. Both decode base64 the same way, so every replica given the
// same key bytes agrees whatever their spelling.

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/store/sealed"
)

// fingerprintInfo is HKDF's info for the cache-key HMAC key: it separates
// this use of the key material from sealing (RFC 5869 section 3.2).
const fingerprintInfo = "tokenbroker cache fingerprint v2"

// fingerprintKey derives the cache-key HMAC key (docs/design.md, Storage) with
// HKDF-SHA256 (RFC 5869) from decoded key bytes, so two replicas given the
// same key in two base64 spellings agree:
//
//   - cache.fingerprint_key when set;
//   - else the last (oldest) of cache.encryption_keys, so that rotating a
//     new key in at the front keeps every cache key: replicas with [new,
//     old] and with [old] share entries and leases during a rolling
//     rotation. Only dropping the oldest key moves the cache to new keys
//     (one miss per token); a fingerprint_key avoids even that;
//   - with Redis and neither, startup fails: an unkeyed HMAC would make
//     Redis key names hashes of credentials that anyone who can list keys
//     could test guesses against.
//
// A process-local store uses a random key.
func fingerprintKey(cfg *config.Config) ([]byte, error) {
	if cfg.Cache.Redis == nil {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("fingerprint key: %w", err)
		}
		return key, nil
	}
	var material []byte
	switch keys := cfg.Cache.EncryptionKeys; {
	case !cfg.Cache.FingerprintKey.IsZero():
		k, err := decodeKey(strings.TrimSpace(cfg.Cache.FingerprintKey.Reveal()))
		if err != nil || len(k) < 32 {
			return nil, fmt.Errorf("cache.fingerprint_key: want base64 of at least 32 random bytes (`openssl rand -base64 32`)")
		}
		material = k
	case len(keys) > 0:
		// Checked like the keys that seal.
		if _, err := encryptionKeys(cfg.Cache); err != nil {
			return nil, err
		}
		k, _ := decodeKey(strings.TrimSpace(keys[len(keys)-1].Reveal()))
		material = k
	case !cfg.Cache.AllowPlaintext:
		// The missing encryption keys are the error to report.
		_, err := encryptionKeys(cfg.Cache)
		return nil, err
	default:
		return nil, fmt.Errorf("cache.fingerprint_key: required with cache.redis and cache.allow_plaintext, so that Redis key names are keyed hashes; " +
			"set it to base64 of 32 random bytes (`openssl rand -base64 32`), the same on every replica")
	}
	key, err := hkdf.Key(sha256.New, material, nil, fingerprintInfo, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	return key, nil
}

// encryptionKeys parses cache.encryption_keys. Without keys it returns a
// nil keyring when cache.allow_plaintext is set, and an error otherwise.
func encryptionKeys(cc config.Cache) (*sealed.Keyring, error) {
	if len(cc.EncryptionKeys) == 0 {
		if cc.AllowPlaintext {
			return nil, nil
		}
		return nil, errors.New("cache.encryption_keys: required with cache.redis, so that Redis never holds a clear token; " +
			"add a key (base64 of 32 random bytes, e.g. `openssl rand -base64 32`), " +
			"or set cache.allow_plaintext: true to store tokens unencrypted")
	}
	keys := make([][]byte, len(cc.EncryptionKeys))
	for i, s := range cc.EncryptionKeys {
		k, err := decodeKey(strings.TrimSpace(s.Reveal()))
		if err != nil || len(k) != sealed.KeySize {
			got := "is not base64"
			if err == nil {
				got = fmt.Sprintf("decodes to %d bytes", len(k))
			}
			return nil, fmt.Errorf("cache.encryption_keys[%d]: %s; want base64 of %d random bytes (`openssl rand -base64 %d`)", i, got, sealed.KeySize, sealed.KeySize)
		}
		keys[i] = k
	}
	ring, err := sealed.NewKeyring(keys...)
	if err != nil {
		return nil, fmt.Errorf("cache.encryption_keys: %w", err)
	}
	return ring, nil
}

// decodeKey accepts standard and URL-safe base64, padded or not.
func decodeKey(s string) ([]byte, error) {
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.DecodeString(s)
		if err == nil {
			return k, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
