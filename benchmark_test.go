package retryhttp_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/cenkalti/backoff/v4"
)

// BenchmarkHappyPath measures a GET on loopback whose first attempt
// succeeds, through the bare transport and through a Transport wrapping
// the same one, side by side. The design target is at most 2 extra
// allocations and 3% extra time per request:
//
//	go test -run '^$' -bench HappyPath -benchmem -count 10 > happy.txt
//	benchstat -col /impl happy.txt
//
// On a shared machine the second of the two sub-benchmarks tends to come
// out a few percent slower, whichever it is, so compare over many counts;
// the bench module measures the ratio in interleaved blocks instead.
func BenchmarkHappyPath(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := &http.Transport{MaxIdleConnsPerHost: 64}
	defer base.CloseIdleConnections()

	runImpls(b, []impl{
		{"impl=bare", base},
		{"impl=retryhttp", &retryhttp.Transport{Base: base}},
	}, func(b *testing.B, rt http.RoundTripper) { getLoop(b, rt, srv.URL) })
}

// BenchmarkParseRetryAfter measures parsing both forms of the header.
func BenchmarkParseRetryAfter(b *testing.B) {
	now := rfcInstant
	for _, v := range []string{"120", "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"} {
		b.Run(v, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := retryhttp.ParseRetryAfter(v, now); !ok {
					b.Fatal("not parsed")
				}
			}
		})
	}
}

// cannedTransport answers every request at once with a fresh 200 response
// and no body, so that a benchmark through it measures the wrapper alone.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// BenchmarkOverhead measures what the Transport itself adds to a request
// whose first attempt succeeds, without the network's noise: the
// difference between its two sub-benchmarks is the Transport's own cost.
func BenchmarkOverhead(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	if err != nil {
		b.Fatal(err)
	}
	runImpls(b, []impl{
		{"impl=bare", cannedTransport{}},
		{"impl=retryhttp", &retryhttp.Transport{Base: cannedTransport{}}},
	}, func(b *testing.B, rt http.RoundTripper) {
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOutcome measures a request whose first attempt succeeds, read
// with Outcome as a caller handling its response would: the happy path
// must stay allocation-free, so Outcome finds nothing in the context and
// costs two context lookups.
func BenchmarkOutcome(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	if err != nil {
		b.Fatal(err)
	}
	rt := &retryhttp.Transport{Base: cannedTransport{}}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		if attempts, reason := retryhttp.Outcome(resp); attempts != 1 || reason != nil {
			b.Fatal(attempts, reason)
		}
	}
}

// readingTransport reads each request's body to its end, 32 KiB at a time
// as net/http does, and answers 200 at once.
type readingTransport struct{}

func (readingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		var buf [32 << 10]byte
		_, _ = io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{req.Body}, buf[:])
		req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// BenchmarkOverheadWithBody is BenchmarkOverhead for a 1 MiB PUT with a
// replayable body, and for a POST without a key, which is never resent,
// each read 32 KiB at a time: the Transport records the body's read errors
// of every request, so that a broken caller's body is never retried nor
// reported as a give-up, at the price of one allocation per request,
// whatever the body's size, and one more for its GetBody, wrapped so that
// the body net/http reopens for a resend of its own is recorded too. The
// POST pays a few more (7 in all): its
// attempt is traced (httptrace's GotConn and WroteHeaders), so that a
// failure after one of net/http's own resends, a dial error or an HTTP/2
// GOAWAY or REFUSED_STREAM, is not taken as proof that it never left when an
// earlier copy went out.
func BenchmarkOverheadWithBody(b *testing.B) {
	payload := make([]byte, 1<<20)
	for _, method := range []string{http.MethodPut, http.MethodPost} {
		b.Run("method="+method, func(b *testing.B) {
			runImpls(b, []impl{
				{"impl=bare", readingTransport{}},
				{"impl=retryhttp", &retryhttp.Transport{Base: readingTransport{}}},
			}, func(b *testing.B, rt http.RoundTripper) {
				body := bytes.NewReader(payload)
				req, err := http.NewRequest(method, "http://127.0.0.1/", body)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					body.Reset(payload)
					if _, err := rt.RoundTrip(req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkOverheadAttemptTimeout measures what Policy.AttemptTimeout adds
// to a request whose first attempt succeeds, without net/http: the
// attempt's request and its own context (with the function that cancels
// it), and one struct that is both the attempt's state and the body
// wrapper that releases it; the timer is reused. net/http adds its own
// share for a context that can be cancelled: see
// BenchmarkHappyPathAttemptTimeout.
func BenchmarkOverheadAttemptTimeout(b *testing.B) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	if err != nil {
		b.Fatal(err)
	}
	runImpls(b, []impl{
		{"impl=retryhttp", &retryhttp.Transport{Base: cannedTransport{}}},
		{"impl=retryhttp-attempt-timeout", &retryhttp.Transport{Base: cannedTransport{}, Policy: retryhttp.Policy{AttemptTimeout: time.Second}}},
	}, func(b *testing.B, rt http.RoundTripper) {
		for b.Loop() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
	})
}

// BenchmarkHappyPathAttemptTimeout measures what Policy.AttemptTimeout adds
// through net/http on loopback, with a response body, the usual case, and
// without one (Content-Length: 0), for which the attempt's context is
// released at once:
//
//	go test -run '^$' -bench HappyPathAttemptTimeout -benchmem
func BenchmarkHappyPathAttemptTimeout(b *testing.B) {
	for _, body := range []string{"ok", ""} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = io.WriteString(w, body)
		}))
		base := &http.Transport{MaxIdleConnsPerHost: 64}
		name := "body=yes"
		if body == "" {
			name = "body=no"
		}
		b.Run(name, func(b *testing.B) {
			runImpls(b, []impl{
				{"impl=retryhttp", &retryhttp.Transport{Base: base}},
				{"impl=retryhttp-attempt-timeout", &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{AttemptTimeout: time.Second}}},
			}, func(b *testing.B, rt http.RoundTripper) { getLoop(b, rt, srv.URL) })
		})
		base.CloseIdleConnections()
		srv.Close()
	}
}

// BenchmarkBudgetParallel measures the happy path's own cost from many
// goroutines at once, with one bucket for every destination and with a
// bucket per destination while 500 other destinations' buckets are
// drained, so that a lock every request contends on would show as time
// growing with -cpu:
//
//	go test -run '^$' -bench BudgetParallel -benchmem -cpu 1,2,4,8
func BenchmarkBudgetParallel(b *testing.B) {
	perHost := retryhttp.NewHostBudget(retryhttp.DefaultBudgetRatio, retryhttp.DefaultBudgetBurst)
	drain := &retryhttp.Transport{Base: always503, Policy: retryhttp.Policy{
		Budget: perHost, MaxAttempts: 2, Backoff: func() backoff.BackOff { return &backoff.ZeroBackOff{} },
	}}
	for i := range 500 {
		for range 12 {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://drained%d.example/", i), nil)
			if _, err := drain.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	}
	runImpls(b, []impl{
		{"budget=none", cannedTransport{}},
		{"budget=single", &retryhttp.Transport{Base: cannedTransport{}, Policy: retryhttp.Policy{Budget: retryhttp.NewBudget(retryhttp.DefaultBudgetRatio, retryhttp.DefaultBudgetBurst)}}},
		{"budget=per-host", &retryhttp.Transport{Base: cannedTransport{}, Policy: retryhttp.Policy{Budget: perHost}}},
	}, func(b *testing.B, rt http.RoundTripper) {
		b.RunParallel(func(pb *testing.PB) {
			req, err := http.NewRequest(http.MethodGet, "http://healthy.example/", nil)
			if err != nil {
				b.Fatal(err)
			}
			for pb.Next() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// impl is one of the transports a benchmark measures side by side.
type impl struct {
	name string
	rt   http.RoundTripper
}

// runImpls runs run as a sub-benchmark for each impl, reporting
// allocations.
func runImpls(b *testing.B, impls []impl, run func(b *testing.B, rt http.RoundTripper)) {
	for _, i := range impls {
		b.Run(i.name, func(b *testing.B) {
			b.ReportAllocs()
			run(b, i.rt)
		})
	}
}

// BenchmarkHostBudgetNewDestination measures the first success to a
// destination that a NewHostBudget already tracking MaxHostBuckets others
// must make room for, as a crawler's every request is: it takes the
// Budget's lock, so its cost bounds how fast requests to new hosts go.
func BenchmarkHostBudgetNewDestination(b *testing.B) {
	rt := &retryhttp.Transport{Base: cannedTransport{}, Policy: retryhttp.Policy{
		Budget: retryhttp.NewHostBudget(retryhttp.DefaultBudgetRatio, retryhttp.DefaultBudgetBurst),
	}}
	reqs := make([]*http.Request, retryhttp.MaxHostBuckets+b.N)
	for i := range reqs {
		reqs[i], _ = http.NewRequest(http.MethodGet, fmt.Sprintf("http://h%d.example/", i), nil)
	}
	for _, req := range reqs[:retryhttp.MaxHostBuckets] {
		if _, err := rt.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for _, req := range reqs[retryhttp.MaxHostBuckets:] {
		if _, err := rt.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}

// getLoop GETs url through rt for the benchmark's loop, reading and closing
// each response body as a caller would.
func getLoop(b *testing.B, rt http.RoundTripper, url string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
