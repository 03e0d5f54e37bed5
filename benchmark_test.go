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
//	go test -run '^$' -bench HappyPath -benchmem -count 10 | benchstat -
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
		{"bare", base},
		{"retryhttp", &retryhttp.Transport{Base: base}},
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
