package config

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/tokenbroker/tokenbroker/secret"
)

var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// maxSecretFile bounds a file: secret.
const maxSecretFile = 64 << 10

// ResolveSecret turns a config value into its secret: "${NAME}" reads the
// environment, "file:/path" reads a file (trailing newline trimmed),
// anything else is the literal value. Errors name the reference, never the
// value.
func ResolveSecret(value string, env Lookup) (secret.Secret, error) {
	if m := envRef.FindStringSubmatch(value); m != nil {
		v, ok := env(m[1])
		if !ok {
			return secret.Secret{}, fmt.Errorf("environment variable %s is not set", m[1])
		}
		return secret.New(v), nil
	}
	if path, ok := strings.CutPrefix(value, "file:"); ok {
		if path == "" {
			return secret.Secret{}, fmt.Errorf("file: reference without a path")
		}
		raw, err := readSecretFile(path)
		if err != nil {
			return secret.Secret{}, err
		}
		return secret.New(strings.TrimRight(string(raw), "\r\n")), nil
	}
	return secret.New(value), nil
}

// readSecretFile reads a whole file of at most maxSecretFile bytes: one
// Read may return less than the file holds (pipes, FUSE and network file
// systems do), which would silently truncate the secret.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, errWithoutValue(err))
	}
	defer f.Close()
	return readBounded(f, path)
}

// readBounded reads r to its end, refusing more than maxSecretFile bytes.
func readBounded(r io.Reader, path string) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, errWithoutValue(err))
	}
	if len(raw) > maxSecretFile {
		return nil, fmt.Errorf("secret file %s is larger than %d bytes", path, maxSecretFile)
	}
	return raw, nil
}

func errWithoutValue(err error) error {
	if os.IsNotExist(err) {
		return fmt.Errorf("does not exist")
	}
	if os.IsPermission(err) {
		return fmt.Errorf("permission denied")
	}
	return err
}

// resolver walks the config and resolves every secret field; it keeps the
// first error.
type resolver struct {
	env Lookup
	err error
	// files are the file: references met.
	files []string
}

func (r *resolver) one(field string, s *secret.Secret) {
	if r.err != nil || s.IsZero() {
		return
	}
	if path, ok := strings.CutPrefix(s.Reveal(), "file:"); ok && path != "" {
		r.files = append(r.files, path)
	}
	v, err := ResolveSecret(s.Reveal(), r.env)
	if err != nil {
		r.err = fmt.Errorf("%s: %w", field, err)
		return
	}
	*s = v
}

func (r *resolver) config(c *Config) {
	if c.Cache.Redis != nil {
		r.one("cache.redis.password", &c.Cache.Redis.Password)
		r.one("cache.redis.sentinel_password", &c.Cache.Redis.SentinelPassword)
	}
	for i := range c.Cache.EncryptionKeys {
		r.one(fmt.Sprintf("cache.encryption_keys[%d]", i), &c.Cache.EncryptionKeys[i])
	}
	r.one("cache.fingerprint_key", &c.Cache.FingerprintKey)
	for name, p := range c.Profiles {
		for k, v := range p.Credentials {
			r.one(fmt.Sprintf("profiles.%s.credentials.%s", name, k), &v)
			p.Credentials[k] = v
		}
	}
	for i, sink := range c.Events.Sinks {
		for k, v := range sink.Headers {
			r.one(fmt.Sprintf("events.sinks[%d].headers.%s", i, k), &v)
			sink.Headers[k] = v
		}
	}
}
