package vendors

import (
	"fmt"
	"strings"
	"time"
)

// Kind classifies a vendor failure; the service maps each kind to one gRPC
// code.
type Kind int

// The kinds of vendor failure.
const (
	// KindUnavailable: network error, timeout or 5xx.
	KindUnavailable Kind = iota + 1
	// KindRejected: the vendor rejected the credentials (invalid_client,
	// invalid_grant, unauthorized_client, 401, 403).
	KindRejected
	// KindBadRequest: the vendor rejected the request itself (invalid_scope,
	// unsupported_grant_type, other 4xx): a configuration problem.
	KindBadRequest
	// KindThrottled: 429 after the retries that fit the deadline.
	KindThrottled
	// KindBadResponse: an answer that cannot be read as a token.
	KindBadResponse
)

func (k Kind) String() string {
	switch k {
	case KindUnavailable:
		return "unavailable"
	case KindRejected:
		return "rejected"
	case KindBadRequest:
		return "bad_request"
	case KindThrottled:
		return "throttled"
	case KindBadResponse:
		return "bad_response"
	}
	return "unknown"
}

// Error is a failed token request. Its fields are safe to show the caller:
// Description is truncated and scrubbed of everything the request sent.
type Error struct {
	Vendor string
	Kind   Kind
	// Status is the HTTP status, 0 when no answer arrived.
	Status int
	// OAuthError, Description and URI are RFC 6749 section 5.2 fields.
	OAuthError  string
	Description string
	URI         string
	// RetryAfter is the vendor's Retry-After, for KindThrottled.
	RetryAfter time.Duration
	// Err is the underlying cause, for logs (never a secret).
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vendor %s: %s", e.Vendor, e.Kind)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.OAuthError != "" {
		fmt.Fprintf(&b, ": %s", e.OAuthError)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ArgumentError is a caller input that cannot be used: the service answers
// INVALID_ARGUMENT naming Field.
type ArgumentError struct {
	// Field is the request field, e.g. "params.region" or
	// "credentials.client_secret".
	Field  string
	Reason string
}

func (e *ArgumentError) Error() string { return e.Field + ": " + e.Reason }

// ConfigError is an operator setting that cannot be used.
type ConfigError struct {
	Setting string
	Reason  string
}

func (e *ConfigError) Error() string { return "setting " + e.Setting + ": " + e.Reason }

// maxDescription bounds what of a vendor's error_description reaches a
// caller.
const maxDescription = 200

// scrub truncates s and replaces every occurrence of the request's secret
// values, so a vendor that echoes the request cannot leak it.
func scrub(s string, secrets []string) string {
	// Replace before and after control characters become spaces: a secret
	// with a space must not survive because the vendor echoed it with a
	// tab, nor one with a tab because we turned it into a space.
	s = redactAll(s, secrets, false)
	s = strings.Map(printable, s)
	s = redactAll(s, secrets, true)
	if len(s) > maxDescription {
		cut := maxDescription
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// printable maps control characters to spaces.
func printable(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return ' '
	}
	return r
}

func redactAll(s string, secrets []string, mapped bool) string {
	for _, v := range secrets {
		if mapped {
			v = strings.Map(printable, v)
		}
		if len(v) >= 3 {
			s = strings.ReplaceAll(s, v, "[REDACTED]")
		}
	}
	return s
}
