package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error detail.
const ErrorDomain = "tokenbroker"

// ErrorInfo reasons (docs/design.md, API and errors).
const (
	ReasonRejectedCredentials = "VENDOR_REJECTED_CREDENTIALS"
	ReasonRejectedRequest     = "VENDOR_REJECTED_REQUEST"
	ReasonUnavailable         = "VENDOR_UNAVAILABLE"
	ReasonThrottled           = "VENDOR_THROTTLED"
	ReasonBadResponse         = "VENDOR_BAD_RESPONSE"
	ReasonMisconfigured       = "VENDOR_MISCONFIGURED"
	// ReasonBudgetExhausted: the broker's own budget of token requests to
	// the vendor (max_requests_per_second) has no slot within the
	// caller's deadline; the vendor was not asked.
	ReasonBudgetExhausted = "VENDOR_BUDGET_EXHAUSTED"
	// ReasonClientMissLimit: the calling client's cache misses caused
	// more vendor requests than limits.misses_per_minute allows; the
	// vendor was not asked.
	ReasonClientMissLimit = "CLIENT_MISS_LIMIT_EXCEEDED"
)

type notFoundError struct{ what, name string }

func (e *notFoundError) Error() string {
	if e.what == "vendor" {
		return fmt.Sprintf("vendor %q is not known; ListVendors lists the vendor ids", e.name)
	}
	return fmt.Sprintf("%s %q is not configured", e.what, e.name)
}

// storeError is a cache failure on a path that cannot do without the cache.
type storeError struct{ err error }

func (e *storeError) Error() string { return "token cache: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// errNoAnswer: every flight the caller joined answered with a token that
// no longer had the caller's min_ttl left (docs/design.md, Token semantics,
// Pauses).
var errNoAnswer = errors.New("no token with the requested min_ttl left; retry")

// toStatus is the one place errors become gRPC statuses (docs/design.md,
// API and errors, and Error mapping).
// Messages tell the caller what to fix and never carry a secret: vendor
// errors are scrubbed where they are made, and anything unexpected is
// logged whole and answered generically.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		arg *vendors.ArgumentError
		cfg *vendors.ConfigError
		nf  *notFoundError
		ve  *vendors.Error
		se  *storeError
		be  *budget.ExhaustedError
		ml  *missLimitError
	)
	switch {
	case errors.Is(err, errNoAnswer):
		return status.Error(codes.Unavailable, errNoAnswer.Error())
	case errors.As(err, &arg):
		return withDetails(status.New(codes.InvalidArgument, arg.Error()), &errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: arg.Field, Description: arg.Reason}},
		})
	case errors.As(err, &nf):
		return status.Error(codes.NotFound, nf.Error())
	case errors.As(err, &cfg):
		slog.Error("vendor configuration error", "err", err)
		return withDetails(status.New(codes.FailedPrecondition, "the server's vendor configuration is invalid: "+cfg.Error()),
			&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: ReasonMisconfigured})
	case errors.As(err, &ve):
		return vendorStatus(ve)
	case errors.As(err, &be):
		return budgetStatus(be)
	case errors.As(err, &ml):
		return missLimitStatus(ml)
	case errors.As(err, &se):
		slog.Error("token cache failed", "err", err)
		return status.Error(codes.Unavailable, "the token cache is unavailable; retry")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded before a token was ready")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	}
	slog.Error("internal error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// missLimitStatus is RESOURCE_EXHAUSTED with RetryInfo, like the auth
// package's per-client force_refresh limit, and ErrorInfo
// CLIENT_MISS_LIMIT_EXCEEDED.
func missLimitStatus(ml *missLimitError) error {
	retry := max(ml.retryAfter, time.Millisecond)
	if r := retry.Truncate(time.Millisecond); r < retry {
		retry = r + time.Millisecond
	}
	return withDetails(status.New(codes.ResourceExhausted, ml.Error()),
		&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: ReasonClientMissLimit, Metadata: map[string]string{"vendor": ml.vendor}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
}

// budgetStatus is RESOURCE_EXHAUSTED with RetryInfo, like a vendor's 429
// (KindThrottled), but to the millisecond: the budget's slots are often
// less than a second apart.
func budgetStatus(be *budget.ExhaustedError) error {
	retry := max(be.RetryAfter, time.Millisecond)
	if r := retry.Truncate(time.Millisecond); r < retry {
		retry = r + time.Millisecond
	}
	msg := fmt.Sprintf("vendor %s: the broker's budget of token requests to this vendor (max_requests_per_second) has no free slot before the deadline; retry in %v or with a longer deadline", be.Vendor, retry)
	return withDetails(status.New(codes.ResourceExhausted, msg),
		&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: ReasonBudgetExhausted, Metadata: map[string]string{"vendor": be.Vendor}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
}

func vendorStatus(ve *vendors.Error) error {
	info := &errdetails.ErrorInfo{Domain: ErrorDomain, Metadata: map[string]string{"vendor": ve.Vendor}}
	if ve.OAuthError != "" {
		info.Metadata["oauth_error"] = ve.OAuthError
	}
	msg := "vendor " + ve.Vendor
	if ve.Status != 0 {
		msg += fmt.Sprintf(" answered HTTP %d", ve.Status)
	}
	if ve.OAuthError != "" {
		msg += " " + ve.OAuthError
	}
	if ve.Description != "" {
		msg += ": " + ve.Description
	}
	var code codes.Code
	var extra []protoMessage
	switch ve.Kind {
	case vendors.KindRejected:
		code, info.Reason = codes.FailedPrecondition, ReasonRejectedCredentials
		msg += " (the vendor rejected the credentials; check the profile or the credentials sent)"
	case vendors.KindBadRequest:
		code, info.Reason = codes.FailedPrecondition, ReasonRejectedRequest
		msg += " (the vendor rejected the token request; check the vendor settings)"
	case vendors.KindThrottled:
		code, info.Reason = codes.ResourceExhausted, ReasonThrottled
		msg += " (the vendor is throttling token requests)"
		if ve.RetryAfter > 0 {
			extra = append(extra, &errdetails.RetryInfo{RetryDelay: durationpb.New(ve.RetryAfter.Round(time.Second))})
		}
	case vendors.KindBadResponse:
		code, info.Reason = codes.Internal, ReasonBadResponse
		msg += " sent an answer that is not a usable token"
	default:
		code, info.Reason = codes.Unavailable, ReasonUnavailable
		msg += " is unavailable"
		if ve.Err != nil && errors.Is(ve.Err, context.DeadlineExceeded) {
			msg += " (no answer within the timeout)"
		}
	}
	return withDetails(status.New(code, msg), append([]protoMessage{info}, extra...)...)
}
