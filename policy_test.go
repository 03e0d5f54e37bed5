package retryhttp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// The transport errors net/http returns, built as it builds them, and
// whether the default rule retries them.
func TestDefaultRetryableErrors(t *testing.T) {
	urlErr := func(err error) error { return &url.Error{Op: "Get", URL: "http://x/", Err: err} }
	opErr := func(op string, errno syscall.Errno) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", urlErr(opErr("dial", syscall.ECONNREFUSED)), true},
		{"connection reset", urlErr(opErr("read", syscall.ECONNRESET)), true},
		{"connection aborted", opErr("read", syscall.ECONNABORTED), true},
		{"broken pipe", opErr("write", syscall.EPIPE), true},
		{"written to a connection closed underneath", urlErr(&net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}), true},
		{"read from a connection closed underneath", &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}, true},
		{"body copied to a connection closed underneath", urlErr(&net.OpError{Op: "readfrom", Net: "tcp", Err: &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}}), true},
		{"dial on a closed listener", &net.OpError{Op: "dial", Net: "tcp", Err: net.ErrClosed}, false},
		{"EOF", urlErr(io.EOF), true},
		{"unexpected EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{"HTTP/2 GOAWAY", errors.New("http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=\"\""), true},
		{"HTTP/2 stream reset", errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer"), true},
		{"HTTP/2 connection lost", errors.New("http2: client connection lost"), true},
		{"idle connection closed", errors.New("http: server closed idle connection"), true},
		{"temporary DNS failure", &net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}, true},
		{"unknown host", urlErr(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}), false},
		{"cancelled", urlErr(context.Canceled), false},
		{"deadline", urlErr(context.DeadlineExceeded), false},
		{"cancelled while reading", fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, context.Canceled), false},
		{"untrusted certificate", urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), false},
		{"unknown authority", urlErr(x509.UnknownAuthorityError{}), false},
		{"wrong host name", urlErr(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}), false},
		{"expired certificate", urlErr(x509.CertificateInvalidError{Reason: x509.Expired}), false},
		{"unsupported scheme", errors.New(`unsupported protocol scheme "gopher"`), false},
		{"malformed header", errors.New(`net/http: invalid header field name "a b"`), false},
		{"anything else", errors.New("something unforeseen"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, retryhttp.DefaultRetryable(nil, tt.err))
			assert.Equal(t, tt.want, retryhttp.RetryStatuses(503)(nil, tt.err), "RetryStatuses treats errors alike")
		})
	}
}

func TestRetryStatusesCopiesItsArguments(t *testing.T) {
	codes := []int{502}
	rule := retryhttp.RetryStatuses(codes...)
	codes[0] = 404
	assert.True(t, rule(&http.Response{StatusCode: 502}, nil))
	assert.False(t, rule(&http.Response{StatusCode: 404}, nil))
	assert.False(t, rule(nil, nil))
}

func TestDefaultIdempotent(t *testing.T) {
	for method, want := range map[string]bool{
		"": true, "GET": true, "HEAD": true, "OPTIONS": true, "TRACE": true, "PUT": true, "DELETE": true,
		"POST": false, "PATCH": false, "CONNECT": false, "PURGE": false,
	} {
		req := &http.Request{Method: method, Header: http.Header{}}
		assert.Equal(t, want, retryhttp.DefaultIdempotent(req), "method %q", method)
	}
}

// A transport error after retries that the rule does not retry comes back
// wrapped with the number of attempts made.
func TestErrorAfterRetriesIsWrapped(t *testing.T) {
	srv := retrytest.NewServer(t,
		retrytest.Unavailable(0).WithHeader("Connection", "close"),
		retrytest.Drop(),
	)
	client, _ := newClient(t, retryhttp.Policy{Retryable: func(resp *http.Response, err error) bool {
		return resp != nil && resp.StatusCode == 503 // errors are not retried
	}})

	_, err := client.Get(srv.URL)

	require.Error(t, err)
	assert.ErrorIs(t, err, io.EOF)
	assert.Contains(t, err.Error(), "retryhttp: failed after 2 attempts")
	assert.Equal(t, 2, srv.Count())
}

func TestBackoffReturningNilIsReported(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0))
	client, _ := newClient(t, retryhttp.Policy{Backoff: func() backoff.BackOff { return nil }})
	_, err := client.Get(srv.URL)
	assert.ErrorContains(t, err, "retryhttp: Policy.Backoff returned a nil backoff.BackOff")
	assert.Equal(t, 1, srv.Count())
}

// A Policy with several bad fields is reported whole, each problem naming
// its field, so that a newcomer fixes them in one go rather than one per
// run.
func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	p := retryhttp.Policy{
		MaxAttempts:    -1,
		MaxElapsed:     -time.Second,
		AttemptTimeout: -time.Millisecond,
		Budget:         retryhttp.NewBudget(-0.1, 10),
	}

	err := p.Validate()

	require.Error(t, err)
	for _, field := range []string{"Policy.MaxAttempts -1", "Policy.MaxElapsed -1s", "Policy.AttemptTimeout -1ms", "Policy.Budget: ratio -0.1"} {
		assert.Contains(t, err.Error(), field)
	}
	var joined interface{ Unwrap() []error }
	require.ErrorAs(t, err, &joined, "errors.Join: each problem is an error of its own")
	assert.Len(t, joined.Unwrap(), 4)
	budgetErr := errors.Unwrap(joined.Unwrap()[3]) // the Budget's own error, under its field's name
	require.Error(t, budgetErr)
	assert.ErrorIs(t, err, budgetErr, "errors.Is sees through the join to each cause")
}
