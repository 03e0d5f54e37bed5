package retryhttp_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
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

func FuzzTransport(f *testing.F) {
	f.Add(byte(0), uint16(503), "1", byte(1), uint16(200), "", []byte("body"))
	f.Add(byte(1), uint16(429), "Sun, 06 Nov 1994 08:49:37 GMT", byte(0), uint16(503), "0", []byte{})
	f.Add(byte(2), uint16(503), "-1", byte(2), uint16(200), "", []byte("x"))
	f.Add(byte(3), uint16(503), "3600", byte(1), uint16(200), "", []byte("payload"))
	f.Add(byte(0), uint16(503), "0", byte(0), uint16(503), "0", []byte("a"))
	f.Fuzz(func(t *testing.T, method byte, status1 uint16, retryAfter1 string, fault byte, status2 uint16, retryAfter2 string, body []byte) {
		methods := []string{"GET", "PUT", "POST", "DELETE"}
		m := methods[int(method)%len(methods)]
		answer := func(status uint16, retryAfter string) retrytest.Answer {
			a := retrytest.Reply(100+int(status)%500, "")
			if a.Status < 200 {
				a.Status = 503 // 1xx answers are not final responses
			}
			return a.WithHeader("Retry-After", retryAfter)
		}
		second := answer(status2, retryAfter2)
		switch fault % 3 {
		case 1:
			second = retrytest.Drop()
		case 2:
			second = second.WithDelay(5 * time.Millisecond)
		}
		srv := retrytest.NewServer(t, answer(status1, retryAfter1), second, retrytest.OK("done"))
		// Without keep-alives net/http never resends by itself, so every
		// attempt the server sees is the Transport's.
		plain := &http.Transport{DisableKeepAlives: true}
		defer plain.CloseIdleConnections()

		base := &closeRecorder{base: plain}
		rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
			Clock: retrytest.NewClock(t), MaxAttempts: 3, Budget: retryhttp.UnlimitedBudget(),
			MaxRetryAfter: time.Hour, MaxElapsed: 2 * time.Hour,
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, m, srv.URL, strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		resp, err := rt.RoundTrip(req)
		if elapsed := time.Since(started); elapsed > 2500*time.Millisecond {
			t.Fatalf("took %v, past the deadline of 2s", elapsed)
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if (resp == nil) == (err == nil) {
			t.Fatalf("a response (%v) or an error (%v), exactly one", resp != nil, err)
		}
		reqs := srv.Requests()
		attempts := len(reqs)
		for i, r := range reqs {
			if string(r.Body) != string(body) {
				t.Fatalf("attempt %d sent %q, not %q", i+1, r.Body, body)
			}
		}
		if m == "POST" && attempts > 1 {
			t.Fatalf("a POST without a key reached the server %d times", attempts)
		}
		if attempts > 3 {
			t.Fatalf("%d attempts, more than MaxAttempts", attempts)
		}
		if base.responses() != base.closed() {
			t.Fatalf("%d responses, %d closed", base.responses(), base.closed())
		}
	})
}
