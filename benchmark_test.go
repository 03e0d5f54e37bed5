package retryhttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/b4dedce7/retryhttp"
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

	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"impl=bare", base},
		{"impl=retryhttp", &retryhttp.Transport{Base: base}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
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
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"impl=bare", cannedTransport{}},
		{"impl=retryhttp", &retryhttp.Transport{Base: cannedTransport{}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
