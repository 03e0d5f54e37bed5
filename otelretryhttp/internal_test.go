package otelretryhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyOf(t *testing.T) {
	cases := []struct {
		url       string
		key       destKey
		budgetKey string
	}{
		{"http://127.0.0.1:8080/x", destKey{"http", "127.0.0.1", "8080"}, "http://127.0.0.1:8080"},
		{"HTTPS://API.Example.com/v1", destKey{"https", "api.example.com", "443"}, "https://api.example.com:443"},
		{"http://example.com", destKey{"http", "example.com", "80"}, "http://example.com:80"},
		{"https://[::1]:8443/", destKey{"https", "::1", "8443"}, "https://[::1]:8443"},
		{"ftp://[::1]/", destKey{"ftp", "::1", ""}, "ftp://[::1]"},
		{"wss://Socket.example/", destKey{"wss", "socket.example", "443"}, "wss://socket.example:443"},
		{"http://[fe80::1%25lo]:8080/x", destKey{"http", "fe80::1%lo", "8080"}, "http://[fe80::1%25lo]:8080"},
		{"https://[FE80::1%25Eth0]/", destKey{"https", "fe80::1%eth0", "443"}, "https://[fe80::1%25eth0]:443"},
	}
	for _, tc := range cases {
		u, err := url.Parse(tc.url)
		require.NoError(t, err)
		k := keyOf(u)
		assert.Equal(t, tc.key, k, tc.url)
		assert.Equal(t, tc.budgetKey, newDestination(k).budgetKey, tc.url)
	}
}

// The budget key of an IPv6 destination with a zone escapes the zone's
// "%", as url.URL.String does, so that it is a URL TokensFor can read: the
// gauge reports a point for it, as for any other destination.
func TestBudgetKeyOfAZonedIPv6Destination(t *testing.T) {
	for _, raw := range []string{"http://[fe80::1%25lo]:8080/x", "https://[fe80::1%25eth0]/", "http://[fe80::1%25%2541]:80"} {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		budget := retryhttp.NewHostBudget(0.1, 10)
		d := newDestination(keyOf(u))

		parsed, err := url.Parse(d.budgetKey)
		require.NoError(t, err, "the key %q is a URL", d.budgetKey)
		assert.Equal(t, strings.ToLower(u.Hostname()), parsed.Hostname(), "the key names the same host")
		assert.Equal(t, 10.0, budget.TokensFor(d.budgetKey), "TokensFor(%q)", d.budgetKey)
	}
}

func TestKeyOfAllocatesNothing(t *testing.T) {
	u, _ := url.Parse("https://api.example.com:8443/v1/items")
	var k destKey
	allocs := testing.AllocsPerRun(100, func() { k = keyOf(u) })
	assert.Zero(t, allocs)
	assert.Equal(t, "8443", k.port)
}

// fakeNow is a clock that moves only when told.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time { return f.t }

func hostURL(i int) *url.URL {
	return &url.URL{Scheme: "http", Host: "host" + strconv.Itoa(i) + ".example:80"}
}

func liveHosts(d *destinations) map[string]bool {
	out := make(map[string]bool)
	for _, e := range d.live() {
		out[e.budgetKey] = true
	}
	return out
}

func TestDestinationsAreBoundedByCount(t *testing.T) {
	clock := &fakeNow{t: time.Unix(1000, 0)}
	d := newDestinations()
	d.now = clock.now
	for i := range maxDestinations + 6 {
		clock.t = clock.t.Add(time.Second)
		d.touch(hostURL(i))
		if i == maxDestinations-1 {
			clock.t = clock.t.Add(time.Second)
			d.touch(hostURL(0)) // host0 is used again, so host1 is now the oldest
		}
	}
	live := liveHosts(d)
	assert.Len(t, live, maxDestinations)
	assert.True(t, live["http://host0.example:80"], "host0 was used recently")
	for i := 1; i <= 6; i++ {
		assert.False(t, live["http://host"+strconv.Itoa(i)+".example:80"], "host%d, least recently used, is forgotten", i)
	}
	assert.True(t, live["http://host7.example:80"])
}

func TestDestinationsAreForgottenWhenIdle(t *testing.T) {
	clock := &fakeNow{t: time.Unix(1000, 0)}
	d := newDestinations()
	d.now = clock.now
	d.touch(hostURL(1))
	d.touch(hostURL(2))
	clock.t = clock.t.Add(destinationIdle / 2)
	d.touch(hostURL(2))
	assert.Len(t, liveHosts(d), 2)

	clock.t = clock.t.Add(destinationIdle/2 + time.Second)
	assert.Equal(t, map[string]bool{"http://host2.example:80": true}, liveHosts(d))
	clock.t = clock.t.Add(destinationIdle)
	assert.Empty(t, liveHosts(d))
	assert.Empty(t, d.m, "forgotten, not just hidden")
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func opError(err error) error {
	return &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}}
}

func TestErrorClass(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("attempt 1: %w", retryhttp.ErrAttemptTimeout), "timeout"},
		{&url.Error{Op: "Get", URL: "http://x", Err: timeoutError{}}, "timeout"},
		{os.ErrDeadlineExceeded, "timeout"},
		{opError(syscall.ECONNREFUSED), "connection_refused"},
		{opError(syscall.ECONNRESET), "connection_reset"},
		{opError(syscall.ECONNABORTED), "connection_reset"},
		{opError(syscall.EPIPE), "broken_pipe"},
		{io.EOF, "eof"},
		{fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), "eof"},
		{&net.OpError{Op: "write", Err: net.ErrClosed}, "connection_closed"},
		{errors.New("http: server closed idle connection"), "connection_closed"},
		{errors.New(`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR`), "http2"},
		{errors.New("stream error: stream ID 3; INTERNAL_ERROR"), "http2"},
		{errors.New("http2: client connection lost"), "http2"},
		{errors.New("http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM"), "http2"},
		{errors.New("http2: client conn not usable"), "http2"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: "http2", IsTemporary: true}}, "dns"},
		{&net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}, "dns"},
		{errors.New("something new"), "_OTHER"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, errorClass(tc.err), "%v", tc.err)
	}
}

func TestReasonName(t *testing.T) {
	cases := []struct {
		reason error
		want   string
	}{
		{retryhttp.ErrAttemptsUsedUp, "attempts_used_up"},
		{retryhttp.ErrRetryAfterTooLong, "retry_after_too_long"},
		{retryhttp.ErrMaxElapsed, "max_elapsed"},
		{retryhttp.ErrDeadline, "deadline"},
		{retryhttp.ErrBudgetEmpty, "budget_empty"},
		{retryhttp.ErrBackoffStop, "backoff_stop"},
		{retryhttp.ErrNotResendable, "not_resendable"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "deadline_exceeded"},
		{fmt.Errorf("wrapped: %w", retryhttp.ErrBudgetEmpty), "budget_empty"},
		{errors.New("a reason from a later version"), "_OTHER"},
		{nil, "_OTHER"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, reasonName(tc.reason), "%v", tc.reason)
	}
}

// BenchmarkTouch measures what the budget gauge costs every request: noting
// its destination.
func BenchmarkTouch(b *testing.B) {
	d := newDestinations()
	u, _ := url.Parse("https://api.example.com/v1/items")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.touch(u)
		}
	})
}
