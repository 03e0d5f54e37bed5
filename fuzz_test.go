package retryhttp_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// The grammar of Retry-After (RFC 9110 §10.2.3 and §5.6.7), written as
// regular expressions independently of the parser, as the fuzz oracle.
var (
	ows          = `[ \t]*`
	dayName      = `(Mon|Tue|Wed|Thu|Fri|Sat|Sun)`
	dayNameLong  = `(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)`
	month        = `(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)`
	timeOfDay    = `[0-9]{2}:[0-9]{2}:[0-9]{2}`
	delaySeconds = regexp.MustCompile(`^` + ows + `([0-9]+)` + ows + `$`)
	httpDate     = regexp.MustCompile(`^` + ows + `(` +
		dayName + `, [0-9]{2} ` + month + ` [0-9]{4} ` + timeOfDay + ` GMT|` +
		dayNameLong + `, [0-9]{2}-` + month + `-[0-9]{2} ` + timeOfDay + ` GMT|` +
		dayName + ` ` + month + ` ([0-9]{2}| [0-9]) ` + timeOfDay + ` [0-9]{4})` + ows + `$`)
)

const (
	maxWholeSeconds = int64(1<<63-1) / int64(time.Second)
	// maxDelay is the delay of a Retry-After too large for a Duration.
	maxDelay = time.Duration(maxWholeSeconds) * time.Second
)

// checkRetryAfterResult checks what ParseRetryAfter or RetryAfter returned
// for value against the grammar.
func checkRetryAfterResult(t *testing.T, value string, d time.Duration, ok bool) {
	t.Helper()
	if d < 0 {
		t.Fatalf("%q: negative delay %v", value, d)
	}
	if !ok {
		if d != 0 {
			t.Fatalf("%q: not ok but delay %v", value, d)
		}
		if delaySeconds.MatchString(value) {
			t.Fatalf("%q: valid delay-seconds rejected", value)
		}
		return
	}
	m := delaySeconds.FindStringSubmatch(value)
	if m == nil && !httpDate.MatchString(value) {
		t.Fatalf("%q: accepted, but it is not in the grammar", value)
	}
	if m == nil {
		return
	}
	// delay-seconds round-trip: the delay prints back as the same number,
	// unless it was too large and saturated.
	digits := strings.TrimLeft(m[1], "0")
	if digits == "" {
		digits = "0"
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > maxWholeSeconds {
		if d < (1<<31)*time.Second {
			t.Fatalf("%q: an overflowing value must mean at least 2^31 s, got %v", value, d)
		}
		return
	}
	if got := strconv.FormatInt(int64(d/time.Second), 10); got != digits || d%time.Second != 0 {
		t.Fatalf("%q: delay %v does not round-trip", value, d)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).Unix()
	for _, seed := range []string{
		"120", "0", "007", "-1", "+1", "1.0", "1e3", " 5 ", "10000000000", "99999999999999999999999",
		"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Thu, 29 Feb 2024 00:00:00 GMT", "Wed, 31 Nov 1994 08:49:37 GMT", "Sat, 31 Dec 2016 23:59:60 GMT",
		"Thursday, 01-Jan-70 00:00:00 GMT", "sun, 06 nov 1994 08:49:37 gmt", "",
	} {
		f.Add(seed, now)
	}
	f.Fuzz(func(t *testing.T, value string, nowUnix int64) {
		now := time.Unix(nowUnix, 0).UTC()
		d, ok := retryhttp.ParseRetryAfter(value, now)
		checkRetryAfterResult(t, value, d, ok)
		if !ok || !httpDate.MatchString(value) {
			return
		}
		// A date one second later is one second further away, unless the
		// first was already in the past (or both are) ...
		if d2, ok2 := retryhttp.ParseRetryAfter(value, now.Add(-time.Second)); !ok2 || (d > 0 && d < maxDelay && d2 != d+time.Second) {
			if !strings.Contains(value, "-") { // ... or an RFC 850 year flips century
				t.Fatalf("%q: %v from now, but %v (%v) a second earlier", value, d, d2, ok2)
			}
		}
	})
}

func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).Unix()
	f.Add("Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:07 GMT", now)
	f.Add("120", "Sun, 06 Nov 1994 08:49:07 GMT", now)
	f.Add("Sun, 06 Nov 1994 08:49:37 GMT", "garbage", now)
	f.Add("Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:07 1994", now)
	f.Add("", "", now)
	f.Fuzz(func(t *testing.T, value, date string, nowUnix int64) {
		now := time.Unix(nowUnix, 0).UTC()
		h := http.Header{"Retry-After": {value}}
		if date != "" {
			h["Date"] = []string{date}
		}
		d, ok := retryhttp.RetryAfter(&http.Response{Header: h}, now)
		checkRetryAfterResult(t, value, d, ok)
		// Without a usable Date, RetryAfter is ParseRetryAfter against now.
		if !httpDate.MatchString(date) {
			d2, ok2 := retryhttp.ParseRetryAfter(value, now)
			if d != d2 || ok != ok2 {
				t.Fatalf("%q with Date %q: %v %v, but ParseRetryAfter says %v %v", value, date, d, ok, d2, ok2)
			}
		}
	})
}

// FuzzTransport sends one request per exec through a Transport whose Base is
// in memory (fuzzRecorder over playInMemory): it plays a fuzzed script of
// answers (statuses, Retry-After values in every form, rate-limit headers,
// bodies of every size, transport errors) without a network, on a fake
// clock, so that an exec costs tens of microseconds rather than a loopback
// round trip per attempt. After each request, runFuzzCase checks what any
// correct retrying transport keeps, whatever the details of its policy.
// TestFuzzTransportSeedsOverLoopback plays the seeds through a real server.
//
// The arguments: method selects the request, policy the Policy (see
// decodeFuzzCase), script the answers, four bytes each (decodeFuzzAnswer),
// retryAfter a raw header value that some answers send, and body the
// request body.
func FuzzTransport(f *testing.F) {
	for _, in := range fuzzTransportSeeds {
		f.Add(in.method, in.policy, in.script, in.retryAfter, in.body)
	}
	f.Fuzz(func(t *testing.T, method byte, policy uint16, script []byte, retryAfter string, body []byte) {
		runFuzzCase(t, decodeFuzzCase(fuzzInput{method, policy, script, retryAfter, body}, false), false)
	})
}

// fuzzInput holds the arguments of FuzzTransport.
type fuzzInput struct {
	method     byte
	policy     uint16
	script     []byte
	retryAfter string
	body       []byte
}

// String returns in as Go source, for f.Add or fuzzTransportSeeds.
func (in fuzzInput) String() string {
	return fmt.Sprintf("{%#02x, %#04x, []byte(%q), %q, []byte(%q)}", in.method, in.policy, in.script, in.retryAfter, in.body)
}

// fuzzTransportSeeds are FuzzTransport's seeds, named by what they play.
// testdata/fuzz/FuzzTransport holds more, in the fuzzer's own format.
var fuzzTransportSeeds = []fuzzInput{
	// 503 Retry-After 1, then 200: a GET retried once.
	{0x00, 0x0003, []byte{0x00, 0x00, 0x03, 0x02, 0x00, 0x02, 0x00, 0x02}, "", nil},
	// MaxAttempts 3 against 503s without end: three attempts, the last
	// 503 returned.
	{0x00, 0x0083, []byte("\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02\x00"), "", nil},
	// 429 with an HTTP-date and a Date header, then 503 "0", for a PUT.
	{0x02, 0x0004, []byte{0x00, 0x01, 0x19, 0x03, 0x00, 0x00, 0x02, 0x00}, "", []byte("payload")},
	// A POST without a key: one attempt whatever the answer.
	{0x04, 0x0000, []byte{0x00, 0x00, 0x02, 0x00}, "", []byte("charge")},
	// A POST with a key is retried, through resets and a refused connection.
	{0x0c, 0x0005, []byte{0xa2, 0, 0, 0, 0xa3, 0, 0, 0, 0x00, 0x02, 0x00, 0x01}, "", []byte("charge")},
	// Retry-After of 20 digits and no limits: a wait too long for anything.
	{0x00, 0x0078, []byte{0x00, 0x00, 0x07, 0x00}, "", nil},
	// The fuzzed Retry-After, "-1", on a body past the drain limit.
	{0x00, 0x0003, []byte{0x00, 0x00, 0x01, 0x07, 0x00, 0x02, 0x00, 0x06}, "-1", nil},
	// Rate-limit headers without Retry-After on a 403 and a 429.
	{0x00, 0x0004, []byte{0x00, 0x03, 0x40, 0x00, 0x00, 0x01, 0x80, 0x00}, "", nil},
	// A body that fails half way is discarded; another is returned, and
	// read as it was sent, its error included.
	{0x03, 0x0003, []byte{0x00, 0x00, 0x00, 0x13, 0x00, 0x02, 0x00, 0x13}, "", []byte("x")},
	// A PATCH with X-Idempotency-Key; a 429 with no body at all.
	{0x1d, 0x0003, []byte{0x00, 0x01, 0x02, 0x18}, "", []byte("patch")},
	// The caller's body fails to read: not the connection's fault.
	{0x42, 0x0003, []byte{0x00, 0x00, 0x00, 0x00}, "", []byte("truncated file")},
	// GetBody fails on the retry.
	{0x82, 0x0003, []byte{0x00, 0x00, 0x00, 0x00}, "", []byte("reopen")},
	// A body without GetBody: one attempt.
	{0x22, 0x0003, []byte{0x00, 0x00, 0x00, 0x00}, "", []byte("stream")},
	// The context is cancelled during the second attempt.
	{0x00, 0x1000 | 0x0005, []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00}, "", nil},
	// A context deadline an hour away and a Retry-After of an hour.
	{0x00, 0x4000 | 0x0010 | 0x0040 | 0x0003, []byte{0x00, 0x00, 0x05, 0x00}, "", nil},
	// The budget allows one retry; AttemptTimeout is set; the status rule.
	{0x00, 0x8000 | 0x0400 | 0x0300 | 0x0005, []byte{0x00, 0x04, 0x02, 0x00, 0x00, 0x05, 0x02, 0x00, 0x00, 0x02, 0x00, 0x00}, "", nil},
	// A 503 whose body stalls past the drain timeout: it is abandoned, and
	// closed, never while it is being read.
	{0x00, 0x0003, []byte{0x00, 0x00, 0x00, 0xff, 0x00, 0x02, 0x00, 0x02}, "", nil},
	// Transport errors that are not retried: a context error, a certificate.
	{0x00, 0x0003, []byte{0xa7, 0x00, 0x00, 0x00}, "", nil},
	{0x00, 0x0003, []byte{0xab, 0x00, 0x00, 0x00}, "", nil},
}

// fuzzCase is a decoded fuzzInput: the request, the Policy and the script.
type fuzzCase struct {
	in fuzzInput

	method        string
	keyHeader     string // "Idempotency-Key", "X-Idempotency-Key" or ""
	body          []byte // nil: no body
	noGetBody     bool   // the body cannot be replayed
	callerBodyErr bool   // reading the body fails half way, from GetBody too
	getBodyErr    bool   // GetBody fails

	maxAttempts    int
	maxRetryAfter  time.Duration
	maxElapsed     time.Duration
	zeroBackoff    bool
	budget         byte // see newPolicy
	attemptTimeout bool
	cancelAt       int  // the attempt during which the context is cancelled; 0: none
	deadline       bool // the context has a deadline an hour away
	statusRule     bool // Retryable is RetryStatuses rather than the default

	answers []fuzzAnswer // then fuzzDone, for ever
}

// String describes the request and the Policy of c.
func (c *fuzzCase) String() string {
	return fmt.Sprintf("%q key %q body %q (no GetBody %v, fails %v, GetBody fails %v); "+
		"MaxAttempts %d MaxRetryAfter %v MaxElapsed %v no backoff %v budget %d AttemptTimeout %v cancel at %d deadline %v RetryStatuses %v",
		c.method, c.keyHeader, c.body, c.noGetBody, c.callerBodyErr, c.getBodyErr,
		c.maxAttempts, c.maxRetryAfter, c.maxElapsed, c.zeroBackoff, c.budget, c.attemptTimeout, c.cancelAt, c.deadline, c.statusRule)
}

// fuzzAnswer is one answer of the in-memory Base.
type fuzzAnswer struct {
	err       error // a transport error; nil for a response
	readBody  bool  // with err: the request body was sent before it
	status    int
	hdr       byte // see header
	size      int  // of the body
	failAfter int  // the body fails after this many bytes; -1: it does not
	noBody    bool // the body is http.NoBody
	stall     bool // the body's first Read takes longer than the Transport drains
	seed      byte // of the body's bytes
}

func (a fuzzAnswer) String() string {
	if a.err != nil {
		return fmt.Sprintf("error %v (body sent %v)", a.err, a.readBody)
	}
	return fmt.Sprintf("%d, header %#02x, body of %d (seed %d, fails after %d, NoBody %v, stalls %v)",
		a.status, a.hdr, a.size, a.seed, a.failAfter, a.noBody, a.stall)
}

// fuzzDone answers once the script has run out.
var fuzzDone = fuzzAnswer{status: 200, size: 4, failAfter: -1, seed: 'd'}

var (
	fuzzMethods       = []string{"GET", "HEAD", "PUT", "DELETE", "POST", "PATCH", "OPTIONS", ""}
	fuzzStatuses      = []int{503, 429, 200, 403, 500, 502, 504, 404, 201, 204, 301, 304, 400, 408, 425, 599}
	fuzzBodySizes     = []int{0, 1, 100, 4 << 10, 32<<10 - 1, 32 << 10, 32<<10 + 1, 100_000}
	fuzzMaxRetryAfter = []time.Duration{0, time.Second, time.Hour, math.MaxInt64}
	fuzzMaxElapsed    = []time.Duration{0, 90 * time.Second, 2 * time.Hour, math.MaxInt64}
)

// fuzzErrors are the transport errors a script can play, with whether the
// request body was sent first.
var fuzzErrors = []struct {
	err      error
	readBody bool
}{
	{io.EOF, true},
	{io.ErrUnexpectedEOF, true},
	{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
	{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, false},
	{&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
	{&net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}, false},
	{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
	{context.Canceled, false},
	{context.DeadlineExceeded, true},
	{&net.DNSError{Err: "no such host", Name: "fuzz.invalid", IsNotFound: true}, false},
	{&net.DNSError{Err: "server misbehaving", Name: "fuzz.invalid", IsTemporary: true}, false},
	{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, false},
	{errors.New("http2: Transport received GOAWAY from server ErrCode:NO_ERROR"), false},
	{errors.New("stream error: stream ID 1; REFUSED_STREAM; received from peer"), true},
	{errors.New("stream error: stream ID 1; PROTOCOL_ERROR; malformed response from server: missing status pseudo header"), true},
	{errors.New("fuzz: an error nobody foresaw"), true},
}

// fuzzNeverSent reports whether err, one of fuzzErrors, proves that the
// request never reached the server: a dial error, a GOAWAY that left its
// stream out, a refused stream.
func fuzzNeverSent(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Op == "dial"
	}
	return err != nil && (strings.HasPrefix(err.Error(), "http2: Transport received GOAWAY from server ErrCode:") ||
		strings.HasSuffix(err.Error(), "; REFUSED_STREAM; received from peer"))
}

// errFuzzBody is the error of a response body that fails half way;
// errFuzzGetBody that of a failing GetBody. (A request body that fails
// half way returns io.ErrUnexpectedEOF, as a file truncated under it.)
var (
	errFuzzBody    = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	errFuzzGetBody = errors.New("fuzz: GetBody failed")
)

// decodeFuzzCase decodes in. The method byte: bits 0-2 the method, bits 3-4
// an idempotency key (01 Idempotency-Key, 11 X-Idempotency-Key, else none),
// bit 5 a body without GetBody, bit 6 a body whose Read fails half way, bit
// 7 a failing GetBody.
// The policy: bits 0-2 MaxAttempts, 3-4 MaxRetryAfter, 5-6 MaxElapsed, 7 no
// backoff, 8-9 the budget, 10 an AttemptTimeout, 11-13 the attempt that
// cancels the context, 14 a deadline, 15 RetryStatuses. For a real server
// (loopback), what only memory can play is left out.
func decodeFuzzCase(in fuzzInput, loopback bool) *fuzzCase {
	c := &fuzzCase{
		in:             in,
		method:         fuzzMethods[in.method&7],
		noGetBody:      in.method&0x20 != 0,
		callerBodyErr:  in.method&0x40 != 0 && !loopback,
		getBodyErr:     in.method&0x80 != 0,
		maxAttempts:    int(in.policy & 7),
		maxRetryAfter:  fuzzMaxRetryAfter[in.policy>>3&3],
		maxElapsed:     fuzzMaxElapsed[in.policy>>5&3],
		zeroBackoff:    in.policy&0x80 != 0,
		budget:         byte(in.policy >> 8 & 3),
		attemptTimeout: in.policy&0x400 != 0,
		cancelAt:       int(in.policy >> 11 & 7),
		deadline:       in.policy&0x4000 != 0,
		statusRule:     in.policy&0x8000 != 0,
	}
	switch {
	case in.method&0x18 == 0x08:
		c.keyHeader = "Idempotency-Key"
	case in.method&0x18 == 0x18:
		c.keyHeader = "X-Idempotency-Key"
	}
	if len(in.body) > 0 {
		c.body = in.body
	}
	for i := 0; i < len(in.script) && len(c.answers) < 8; i += 4 {
		var b [4]byte
		copy(b[:], in.script[i:])
		c.answers = append(c.answers, decodeFuzzAnswer(b, c.method, loopback))
	}
	return c
}

// decodeFuzzAnswer decodes an answer of four bytes: its kind (below 0xa0 a
// response, else a transport error of fuzzErrors), its status (low four
// bits) and the seed of its body (high four), its headers (see header), and
// its body: bits 0-2 the size, 3-4 clean, failing half way, or http.NoBody;
// 0xff a body that stalls.
func decodeFuzzAnswer(b [4]byte, method string, loopback bool) fuzzAnswer {
	if b[0] >= 0xa0 {
		e := fuzzErrors[int(b[0]-0xa0)%len(fuzzErrors)]
		return fuzzAnswer{err: e.err, readBody: e.readBody}
	}
	a := fuzzAnswer{
		status:    fuzzStatuses[b[1]&0xf],
		hdr:       b[2],
		size:      fuzzBodySizes[b[3]&7],
		failAfter: -1,
		seed:      b[1] ^ b[3],
	}
	switch {
	case b[3] == 0xff:
		// A stalled body costs real time, too much for fuzzing: go test
		// plays it from the seeds.
		a.stall, a.size = !loopback && !fuzzing(), 100
	case b[3]>>3&3 == 2 && !loopback:
		a.failAfter = a.size / 2
	case b[3]>>3&3 == 3:
		a.noBody, a.size = !loopback, 0
	}
	// No body in these, as a real server sends none.
	if a.status == 204 || a.status == 304 || method == "HEAD" {
		a.size, a.failAfter = 0, -1
	}
	return a
}

// fuzzing reports whether this process is a fuzzing worker.
var fuzzing = sync.OnceValue(func() bool {
	f := flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() == "true"
})

// header returns the header fields of a response served at now: bits 0-3
// pick Retry-After (fuzzRetryAfter), 4-5 a Date, 6-7 rate-limit fields.
func (a fuzzAnswer) header(now time.Time, raw string) http.Header {
	h := http.Header{}
	if v := fuzzRetryAfter(a.hdr&0xf, raw, now); v != nil {
		h["Retry-After"] = v
	}
	switch a.hdr >> 4 & 3 {
	case 1:
		h.Set("Date", now.UTC().Format(http.TimeFormat))
	case 2: // the server's clock an hour behind
		h.Set("Date", now.Add(-time.Hour).UTC().Format(http.TimeFormat))
	case 3:
		h.Set("Date", "yesterday")
	}
	switch a.hdr >> 6 {
	case 1:
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(20*time.Second).Unix(), 10))
	case 2:
		h.Set("RateLimit", `"default";r=0;t=15`)
		h.Set("RateLimit-Policy", `"default";q=100;w=60`)
	case 3:
		h.Set("X-RateLimit-Remaining", "0")
		h["Ratelimit-Reset"] = []string{raw}
	}
	return h
}

// fuzzRetryAfter returns the Retry-After values of selector sel, for a
// response served at now.
func fuzzRetryAfter(sel byte, raw string, now time.Time) []string {
	date := func(d time.Duration, layout string) []string { return []string{now.Add(d).UTC().Format(layout)} }
	switch sel {
	case 1:
		return []string{raw}
	case 2:
		return []string{"0"}
	case 3:
		return []string{"1"}
	case 4:
		return []string{"120"}
	case 5:
		return []string{"3600"}
	case 6:
		return []string{"-1"}
	case 7:
		return []string{"99999999999999999999"}
	case 8:
		return []string{"1.5"}
	case 9:
		return date(30*time.Second, http.TimeFormat)
	case 10:
		return date(-30*time.Second, http.TimeFormat)
	case 11:
		return date(90*time.Second, retrytest.LayoutRFC850)
	case 12:
		return date(5*time.Second, retrytest.LayoutASCTime)
	case 13:
		return date(10*time.Hour, http.TimeFormat)
	case 14:
		return []string{"1", "2"}
	case 15:
		return []string{" 7 "}
	}
	return nil
}

// answer returns the answer to attempt n, from 1.
func (c *fuzzCase) answer(n int) fuzzAnswer {
	if n <= len(c.answers) {
		return c.answers[n-1]
	}
	return fuzzDone
}

// resendable reports whether the request may be sent more than once, by
// DefaultIdempotent's rule and a replayable body.
func (c *fuzzCase) resendable() bool {
	if c.body != nil && c.noGetBody {
		return false
	}
	switch c.method {
	case "POST", "PATCH":
		return c.keyHeader != ""
	}
	return true
}

func (c *fuzzCase) newPolicy(clock *retrytest.Clock) retryhttp.Policy {
	p := retryhttp.Policy{
		Clock: clock, MaxAttempts: c.maxAttempts,
		MaxRetryAfter: c.maxRetryAfter, MaxElapsed: c.maxElapsed,
	}
	if c.zeroBackoff {
		p.Backoff = noWait
	}
	switch c.budget {
	case 0:
		p.Budget = retryhttp.UnlimitedBudget()
	case 2:
		p.Budget = retryhttp.NewBudget(0, 0) // no retry at all
	case 3:
		p.Budget = retryhttp.NewBudget(0.5, 1) // one retry
	} // 1: the Transport's own
	if c.attemptTimeout {
		p.AttemptTimeout = time.Minute // never reached: the Base answers at once
	}
	if c.statusRule {
		p.Retryable = retryhttp.RetryStatuses(500, 502, 503, 504, 429, 403)
	}
	return p
}

// newRequest returns the caller's request to target, and every request
// body it opens: the caller's first, then one for each GetBody call.
func (c *fuzzCase) newRequest(ctx context.Context, target *url.URL) (*http.Request, *fuzzReqBodies) {
	u := *target // not parsed again for each exec: url.Parse is slow under coverage instrumentation
	req := (&http.Request{
		Method: c.method, URL: &u, Host: u.Host, Header: http.Header{},
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}).WithContext(ctx)
	if c.keyHeader != "" {
		req.Header.Set(c.keyHeader, "k-42")
	}
	req.Header.Set("X-Fuzz", "unchanged")
	bodies := &fuzzReqBodies{}
	if c.body == nil {
		return req, bodies
	}
	req.Body = bodies.open(c)
	req.ContentLength = int64(len(c.body))
	if !c.noGetBody {
		req.GetBody = func() (io.ReadCloser, error) {
			if c.getBodyErr {
				return nil, errFuzzGetBody
			}
			return bodies.open(c), nil
		}
	}
	return req, bodies
}

// fuzzReqBodies are the request bodies of a request.
type fuzzReqBodies struct {
	mu   sync.Mutex
	all  []*fuzzReqBody
	done atomic.Bool // the request is over; a body opened later is a leak
}

func (b *fuzzReqBodies) open(c *fuzzCase) *fuzzReqBody {
	body := &fuzzReqBody{data: c.body, failAt: -1, lateOpen: b.done.Load()}
	if c.callerBodyErr {
		body.failAt = len(c.body) / 2
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all = append(b.all, body)
	return body
}

func (b *fuzzReqBodies) list() []*fuzzReqBody {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*fuzzReqBody(nil), b.all...)
}

// fuzzReqBody is a request body that records whether it was closed.
type fuzzReqBody struct {
	mu       sync.Mutex
	data     []byte
	off      int
	failAt   int // Read fails at this offset; -1: it does not
	closed   atomic.Bool
	lateOpen bool
}

func (b *fuzzReqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	end := len(b.data)
	if b.failAt >= 0 {
		end = b.failAt
	}
	if b.off >= end {
		if b.failAt >= 0 {
			return 0, io.ErrUnexpectedEOF // a file truncated under the caller
		}
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:end])
	b.off += n
	return n, nil
}

func (b *fuzzReqBody) Close() error {
	b.closed.Store(true)
	return nil
}

// fuzzAttempt is what the Base was given and did in one attempt.
type fuzzAttempt struct {
	n          int       // from 1, in the order of the Base's calls
	ctxAttempt int       // retryhttp.Attempt of the request's context
	start      time.Time // on the fake clock
	problem    string    // what was wrong with the request, if anything
	answer     fuzzAnswer
	// For the in-memory Base: whether it read the request body to its end,
	// and whether that was the caller's body, byte for byte.
	bodyRead, bodySame bool
	resp               *http.Response
	body               *fuzzBody // resp's body, instrumented; nil for none
	err                error
	retryAfter         time.Duration // what resp's Retry-After asked, if hasRetryAfter
	hasRetryAfter      bool
}

// fuzzRecorder is the Transport's Base: it hands each attempt to play,
// instruments the response body and records the attempt.
type fuzzRecorder struct {
	c      *fuzzCase
	clock  *retrytest.Clock
	caller *http.Request
	cancel context.CancelFunc
	play   func(a *fuzzAttempt, req *http.Request) (*http.Response, error)

	mu       sync.Mutex
	attempts []*fuzzAttempt
}

func (r *fuzzRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	a := &fuzzAttempt{n: len(r.attempts) + 1, ctxAttempt: retryhttp.Attempt(req.Context()), start: r.clock.Now()}
	r.attempts = append(r.attempts, a)
	r.mu.Unlock()
	a.answer = r.c.answer(a.n)
	switch {
	case req == r.caller && a.n > 1:
		a.problem = "the caller's request was sent again"
	case req.Method != r.caller.Method || *req.URL != *r.caller.URL:
		a.problem = fmt.Sprintf("sent as %s %s", req.Method, req.URL)
	case !headerHas(req.Header, r.caller.Header):
		a.problem = fmt.Sprintf("sent with header %v, not the caller's %v", req.Header, r.caller.Header)
	case (req.Body == nil || req.Body == http.NoBody) != (r.c.body == nil):
		a.problem = "sent with a body other than the caller's"
	}
	resp, err := r.play(a, req)
	if err == nil && resp.Body != http.NoBody {
		a.body = &fuzzBody{inner: resp.Body}
		if a.answer.stall {
			a.body.stall = 60 * time.Millisecond // past the Transport's drainTimeout
		}
		resp.Body = a.body
	}
	if err == nil {
		a.retryAfter, a.hasRetryAfter = retryhttp.RetryAfter(resp, r.clock.Now())
	}
	a.resp, a.err = resp, err
	if a.n == r.c.cancelAt {
		r.cancel()
	}
	return resp, err
}

func (r *fuzzRecorder) list() []*fuzzAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*fuzzAttempt(nil), r.attempts...)
}

// playInMemory answers an attempt from the script, as a Base on a network
// would: it reads (sends) and closes the request body, then answers.
func playInMemory(c *fuzzCase, clock *retrytest.Clock) func(a *fuzzAttempt, req *http.Request) (*http.Response, error) {
	return func(a *fuzzAttempt, req *http.Request) (*http.Response, error) {
		ans := a.answer
		if req.Body != nil {
			var bodyErr error
			if ans.err == nil || ans.readBody {
				var sent bytes.Buffer
				_, bodyErr = io.Copy(&sent, req.Body)
				a.bodyRead = bodyErr == nil
				a.bodySame = bytes.Equal(sent.Bytes(), c.body)
			}
			req.Body.Close()
			if bodyErr != nil { // as net/http, which reports the body's error
				return nil, fmt.Errorf("fuzz: sending the request body: %w", bodyErr)
			}
		}
		if ans.err != nil {
			return nil, ans.err
		}
		resp := &http.Response{
			Status: strconv.Itoa(ans.status) + " " + http.StatusText(ans.status), StatusCode: ans.status,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: ans.header(clock.Now(), c.in.retryAfter), ContentLength: int64(ans.size),
			Body: http.NoBody, Request: req,
		}
		if !ans.noBody {
			resp.Body = &patternBody{seed: ans.seed, size: ans.size, failAfter: ans.failAfter}
		}
		if ans.failAfter >= 0 {
			resp.ContentLength = -1
		}
		return resp, nil
	}
}

// fuzzPattern holds the bytes of every response body: the body with seed s
// is fuzzPattern[patternStart(s):], so that making and checking a body is a
// copy and a comparison of memory, which stay fast under the fuzzer's
// coverage instrumentation where a loop over bytes does not.
var fuzzPattern = func() []byte {
	b := make([]byte, patternStart(255)+fuzzBodySizes[len(fuzzBodySizes)-1])
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}()

// patternStart returns where the body with the given seed starts in
// fuzzPattern: an odd stride, so that bodies of different seeds differ.
func patternStart(seed byte) int { return int(seed) * 509 }

// patternBody is a response body of size bytes from fuzzPattern, that fails
// with errFuzzBody after failAfter bytes if failAfter >= 0.
type patternBody struct {
	mu        sync.Mutex
	seed      byte
	size, off int
	failAfter int
}

func (b *patternBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	end := b.size
	if b.failAfter >= 0 {
		end = b.failAfter
	}
	if b.off >= end {
		if b.failAfter >= 0 {
			return 0, errFuzzBody
		}
		return 0, io.EOF
	}
	start := patternStart(b.seed)
	n := copy(p, fuzzPattern[start+b.off:start+end])
	b.off += n
	return n, nil
}

func (b *patternBody) Close() error { return nil }

// fuzzBody instruments a response body: whether it was closed, and whether
// Read and Close, or two Reads, ever ran at once, which an io.ReadCloser
// does not allow.
type fuzzBody struct {
	inner   io.ReadCloser
	stall   time.Duration // the first Read sleeps this long first
	active  atomic.Int32
	reads   atomic.Int32
	overlap atomic.Bool
	closed  atomic.Bool
}

var errFuzzReadAfterClose = errors.New("fuzz: read on closed response body")

func (b *fuzzBody) enter() {
	if b.active.Add(1) > 1 {
		b.overlap.Store(true)
	}
}

func (b *fuzzBody) Read(p []byte) (int, error) {
	b.enter()
	defer b.active.Add(-1)
	if b.closed.Load() {
		return 0, errFuzzReadAfterClose
	}
	if b.reads.Add(1) == 1 && b.stall > 0 {
		time.Sleep(b.stall)
	}
	return b.inner.Read(p)
}

func (b *fuzzBody) Close() error {
	b.enter()
	defer b.active.Add(-1)
	b.closed.Store(true)
	return b.inner.Close()
}

// fuzzEventually reports whether cond holds, waiting for it a little: the
// Transport may close a discarded body on a goroutine of its own.
func fuzzEventually(cond func() bool) bool {
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// fuzzURL is the URL of the in-memory Base.
var fuzzURL = &url.URL{Scheme: "http", Host: "fuzz.invalid", Path: "/path", RawQuery: "q=1"}

// runFuzzCase sends c's request through a Transport over the in-memory
// Base, or over net/http and a loopback server that plays the same script,
// and checks the invariants.
func runFuzzCase(t *testing.T, c *fuzzCase, loopback bool) {
	clock := retrytest.NewClock(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if c.deadline {
		ctx, cancel = context.WithTimeout(ctx, time.Hour)
		defer cancel()
	}
	rec := &fuzzRecorder{c: c, clock: clock, cancel: cancel}
	target := fuzzURL
	var srv *retrytest.Server
	if loopback {
		srv = newFuzzServer(t, c, clock)
		var err error
		if target, err = url.Parse(srv.URL + "/path?q=1"); err != nil {
			t.Fatal(err)
		}
		plain := &http.Transport{DisableKeepAlives: true} // every attempt the Transport's, none net/http's
		defer plain.CloseIdleConnections()
		rec.play = func(_ *fuzzAttempt, req *http.Request) (*http.Response, error) { return plain.RoundTrip(req) }
	} else {
		rec.play = playInMemory(c, clock)
	}
	req, reqBodies := c.newRequest(ctx, target)
	rec.caller = req
	var onRetry []retryhttp.RetryEvent
	var onGiveUp []retryhttp.GiveUpEvent
	p := c.newPolicy(clock)
	p.OnRetry = func(ev retryhttp.RetryEvent) { onRetry = append(onRetry, ev) }
	p.OnGiveUp = func(ev retryhttp.GiveUpEvent) { onGiveUp = append(onGiveUp, ev) }
	held := map[int]bool{} // attempts a quota hold kept back
	p.OnHold = func(ev retryhttp.HoldEvent) { held[ev.Attempt] = true }
	rt := &retryhttp.Transport{Base: rec, Policy: p}
	snap := snapshotRequest(req)

	resp, err := rt.RoundTrip(req)

	reqBodies.done.Store(true)
	attempts := rec.list()
	fail := func(format string, args ...any) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, format, args...)
		fmt.Fprintf(&b, "\ninput: %s\nrequest: %s\nresult: response %v, error %v", c.in, c, resp != nil, err)
		for _, a := range attempts {
			fmt.Fprintf(&b, "\nattempt %d at +%v: %s", a.n, a.start.Sub(attempts[0].start), a.answer)
		}
		fmt.Fprintf(&b, "\nwaits: %v", clock.Waits())
		t.Fatal(b.String())
	}
	n := len(attempts)

	// One outcome, from attempts the Policy allows.
	if (resp == nil) == (err == nil) {
		fail("RoundTrip returned a response (%v) and an error (%v): exactly one, please", resp != nil, err)
	}
	if n == 0 {
		fail("no attempt, but the Policy is valid")
	}
	maxAttempts := cmp.Or(c.maxAttempts, retryhttp.DefaultMaxAttempts)
	if n > maxAttempts {
		fail("%d attempts, more than MaxAttempts %d", n, maxAttempts)
	}
	if !c.resendable() && n != 1 {
		// Only after attempts that never left, and with a body that can
		// be replayed.
		if c.body != nil && c.noGetBody {
			fail("%d attempts of a request whose body cannot be replayed", n)
		}
		for _, a := range attempts[:n-1] {
			if !fuzzNeverSent(a.answer.err) {
				fail("%d attempts of a request that may not be sent twice, after attempt %d, which may have reached the server", n, a.n)
			}
		}
	}
	// The budget bounds charged retries: every retry of an attempt that
	// reached the server takes a token, and one whose attempt never left
	// takes none. A retry at a time the server named, or one a quota hold
	// kept back, may be paced by the hold's announced quota, and free, so
	// only the others are counted: they are charged for sure.
	blind := 0
	for _, ev := range onRetry {
		neverLeft := slices.ContainsFunc(attempts, func(a *fuzzAttempt) bool { return a.n == ev.Attempt && fuzzNeverSent(a.answer.err) })
		if ev.Attempt < n && (!ev.HasRetryAfter || ev.RetryAfter <= 0) && !neverLeft && !held[ev.Attempt+1] { // a retry that was sent
			blind++
		}
	}
	if (c.budget == 2 && blind > 0) || (c.budget == 3 && blind > 1) {
		fail("%d blind retries in %d attempts, more than the budget allows", blind, n)
	}
	if c.cancelAt > 0 && n > c.cancelAt {
		fail("%d attempts, after the context was cancelled in attempt %d", n, c.cancelAt)
	}

	// What each attempt sent.
	for _, a := range attempts {
		if a.problem != "" {
			fail("attempt %d: %s", a.n, a.problem)
		}
		if a.ctxAttempt != a.n {
			fail("attempt %d: retryhttp.Attempt says %d", a.n, a.ctxAttempt)
		}
		if a.bodyRead && !a.bodySame {
			fail("attempt %d sent a body other than the caller's", a.n)
		}
	}
	if srv != nil && !c.callerBodyErr {
		for i, r := range srv.Requests() {
			if !bytes.Equal(r.Body, c.body) {
				fail("request %d reached the server with body %q, not %q", i+1, r.Body, c.body)
			}
		}
	}
	if problem := snap.changed(req, ctx); problem != "" {
		fail("the caller's request was modified: %s", problem)
	}
	for i, b := range reqBodies.list() {
		if b.lateOpen {
			fail("request body %d was opened after RoundTrip returned", i+1)
		}
		if !fuzzEventually(b.closed.Load) {
			fail("request body %d (of %d opened) was never closed", i+1, len(reqBodies.list()))
		}
	}

	// What came back: the last attempt's outcome.
	last := attempts[n-1]
	if last.resp != nil && resp == nil && !c.getBodyErr {
		fail("the last attempt's response was not returned: %v", err)
	}
	// The caller sees the last attempt's error: wrapped, or at least told
	// (a Transport may keep a timeout of its Base's from matching
	// context.DeadlineExceeded, which the caller's deadline means).
	if last.err != nil && err != nil && !c.getBodyErr &&
		!errors.Is(err, last.err) && !strings.Contains(err.Error(), last.err.Error()) {
		fail("the error %v does not carry the last attempt's error %v", err, last.err)
	}
	if resp != nil {
		if last.resp == nil || resp.StatusCode != last.resp.StatusCode {
			fail("returned status %d, not the last attempt's", resp.StatusCode)
		}
		if problem := readWhole(resp, last.answer, srv != nil); problem != "" {
			fail("the response returned: %s", problem)
		}
		resp.Body.Close()
	}
	for _, a := range attempts {
		if a.body == nil {
			continue
		}
		if !fuzzEventually(a.body.closed.Load) {
			fail("the body of attempt %d was never closed", a.n)
		}
		if a.body.overlap.Load() {
			fail("the body of attempt %d had Read and Close, or two Reads, at once", a.n)
		}
	}

	// The waits.
	for i, w := range clock.Waits() {
		if w < 0 {
			fail("wait %d is negative: %v", i+1, w)
		}
	}
	maxRetryAfter := cmp.Or(c.maxRetryAfter, retryhttp.DefaultMaxRetryAfter)
	for i := 0; i+1 < n; i++ {
		a, gap := attempts[i], attempts[i+1].start.Sub(attempts[i].start)
		if a.hasRetryAfter && a.retryAfter > maxRetryAfter {
			fail("attempt %d was retried, but its Retry-After %v exceeds MaxRetryAfter %v", a.n, a.retryAfter, maxRetryAfter)
		}
		if a.hasRetryAfter && gap < a.retryAfter {
			fail("attempt %d was retried after %v, before its Retry-After %v", a.n, gap, a.retryAfter)
		}
		if c.deadline && gap >= time.Hour {
			fail("attempt %d was retried after %v, past the context's deadline", a.n, gap)
		}
	}
	if elapsed := last.start.Sub(attempts[0].start); elapsed > cmp.Or(c.maxElapsed, retryhttp.DefaultMaxElapsed) {
		fail("the last attempt started %v after the first, past MaxElapsed", elapsed)
	}

	// The hooks: OnRetry before each retry (and perhaps a last one that
	// did not fit after all), OnGiveUp at most once, about all attempts.
	if len(onRetry) < n-1 || len(onRetry) > n {
		fail("OnRetry was called %d times for %d attempts", len(onRetry), n)
	}
	for i, ev := range onRetry {
		// The failed attempt's own request: the caller's, or a copy of it,
		// for the first.
		if ev.Attempt != i+1 || ev.Wait < 0 || ev.Request == nil || retryhttp.Attempt(ev.Request.Context()) != ev.Attempt ||
			(ev.Attempt > 1 && ev.Request == req) || ev.Request.URL.String() != req.URL.String() {
			fail("OnRetry %d: attempt %d, wait %v, request of attempt %d", i+1, ev.Attempt, ev.Wait, retryhttp.Attempt(ev.Request.Context()))
		}
	}
	if len(onGiveUp) > 1 || (len(onGiveUp) == 1 && onGiveUp[0].Attempts != n) {
		fail("OnGiveUp: %+v, after %d attempts", onGiveUp, n)
	}
}

// readWhole reads resp's body and reports what is wrong with it, if it is
// not what the Base answered, whole.
func readWhole(resp *http.Response, ans fuzzAnswer, loopback bool) string {
	buf := fuzzReadBuffers.Get().(*[]byte)
	defer fuzzReadBuffers.Put(buf)
	want := fuzzPattern[patternStart(ans.seed):]
	off := 0
	for {
		n, err := resp.Body.Read(*buf)
		if off+n > len(want) || !bytes.Equal((*buf)[:n], want[off:off+n]) {
			return fmt.Sprintf("bytes %d to %d differ", off, off+n)
		}
		off += n
		if err == nil {
			continue
		}
		size, wantErr := ans.size, error(io.EOF)
		if ans.failAfter >= 0 {
			size, wantErr = ans.failAfter, errFuzzBody
		}
		switch {
		case off != size:
			return fmt.Sprintf("%d bytes of %d, then %v", off, size, err)
		case !errors.Is(err, wantErr) && !(loopback && err == io.EOF):
			return fmt.Sprintf("ended with %v, not %v", err, wantErr)
		}
		return ""
	}
}

// fuzzReadBuffers keeps the buffers readWhole reads into off the stack of
// each exec's goroutine, which would otherwise grow to hold one.
var fuzzReadBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// requestSnapshot is what a request's caller may rely on RoundTrip not to
// change.
type requestSnapshot struct {
	method        string
	url           *url.URL
	urlValue      url.URL
	header        http.Header
	body          io.ReadCloser
	contentLength int64
	host          string
}

func snapshotRequest(req *http.Request) requestSnapshot {
	return requestSnapshot{req.Method, req.URL, *req.URL, req.Header.Clone(), req.Body, req.ContentLength, req.Host}
}

func (s requestSnapshot) changed(req *http.Request, ctx context.Context) string {
	switch {
	case req.Method != s.method:
		return "method " + req.Method
	case req.URL != s.url || *req.URL != s.urlValue:
		return "URL " + req.URL.String()
	case !headerEqual(req.Header, s.header):
		return fmt.Sprintf("header %v", req.Header)
	case req.Body != s.body:
		return "body replaced"
	case req.ContentLength != s.contentLength || req.Host != s.host:
		return "content length or host"
	case req.Context() != ctx:
		return "context replaced"
	}
	return ""
}

// headerEqual reports whether a and b hold the same fields, as
// reflect.DeepEqual would but faster.
func headerEqual(a, b http.Header) bool {
	return len(a) == len(b) && headerHas(a, b)
}

// headerHas reports whether h holds every field of want, with the same
// values: an attempt may carry more fields than the caller's request, but
// not lose or change one, the Idempotency-Key above all.
func headerHas(h, want http.Header) bool {
	for k, v := range want {
		if got, ok := h[k]; !ok || !slices.Equal(got, v) {
			return false
		}
	}
	return true
}

// newFuzzServer returns a loopback server that plays c's script: each
// transport error closes the connection without an answer.
func newFuzzServer(t *testing.T, c *fuzzCase, clock *retrytest.Clock) *retrytest.Server {
	toAnswer := func(a fuzzAnswer) retrytest.Answer {
		if a.err != nil {
			return retrytest.Drop()
		}
		start := patternStart(a.seed)
		ans := retrytest.Reply(a.status, string(fuzzPattern[start:start+a.size]))
		// The dates are from the script's start; the waits it plays
		// make them nearer, which the invariants take into account.
		ans.Header = a.header(clock.Now(), c.in.retryAfter)
		for k, vv := range ans.Header {
			for _, v := range vv {
				if strings.ContainsFunc(v, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
					delete(ans.Header, k) // net/http would not send it as it is
				}
			}
		}
		return ans
	}
	var script []retrytest.Answer
	for _, a := range c.answers {
		script = append(script, toAnswer(a))
	}
	return retrytest.NewServer(t, script...).UseClock(clock).Otherwise(toAnswer(fuzzDone))
}

// TestFuzzTransportSeedsOverLoopback plays FuzzTransport's seeds, those it
// adds and those of testdata/fuzz/FuzzTransport, through net/http and a
// real loopback server rather than the in-memory Base, and checks the same
// invariants, so that the in-memory Base cannot drift from what a network
// does. A transport error becomes a dropped connection.
func TestFuzzTransportSeedsOverLoopback(t *testing.T) {
	inputs := append([]fuzzInput(nil), fuzzTransportSeeds...)
	inputs = append(inputs, readFuzzCorpus(t, filepath.Join("testdata", "fuzz", "FuzzTransport"))...)
	for i, in := range inputs {
		t.Run(strconv.Itoa(i+1), func(t *testing.T) {
			t.Parallel()
			runFuzzCase(t, decodeFuzzCase(in, true), true)
		})
	}
}

// readFuzzCorpus reads the inputs of FuzzTransport that dir holds, in the
// format "go test fuzz v1" that go test writes: a header line, then one Go
// expression per argument, such as uint16(503) or []byte("x").
func readFuzzCorpus(t *testing.T, dir string) []fuzzInput {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var inputs []fuzzInput
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 6 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not an input of FuzzTransport", file)
		}
		var vals [5]string
		for i, line := range lines[1:] {
			expr, err := parser.ParseExpr(line)
			call, ok := expr.(*ast.CallExpr)
			if err != nil || !ok || len(call.Args) != 1 {
				t.Fatalf("%s: %q is not a conversion", file, line)
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok {
				t.Fatalf("%s: %q is not a literal", file, line)
			}
			if vals[i], err = literalValue(lit); err != nil {
				t.Fatalf("%s: %q: %v", file, line, err)
			}
		}
		method, err1 := strconv.ParseUint(vals[0], 0, 8)
		policy, err2 := strconv.ParseUint(vals[1], 0, 16)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		inputs = append(inputs, fuzzInput{byte(method), uint16(policy), []byte(vals[2]), vals[3], []byte(vals[4])})
	}
	return inputs
}

// literalValue returns the value of a literal: a string's content, a
// character's number, or an integer as written.
func literalValue(lit *ast.BasicLit) (string, error) {
	switch lit.Kind {
	case token.STRING:
		return strconv.Unquote(lit.Value)
	case token.CHAR:
		r, _, _, err := strconv.UnquoteChar(lit.Value[1:len(lit.Value)-1], '\'')
		return strconv.Itoa(int(r)), err
	case token.INT:
		return lit.Value, nil
	}
	return "", fmt.Errorf("unexpected literal %s", lit.Value)
}
