package retryhttp_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// h2ProtocolError is RFC 9113's PROTOCOL_ERROR.
const h2ProtocolError = 0x1

// newH2TLSServer is an h2Server over TLS on loopback: net/http's own server
// makes the TLS handshake, negotiates h2 (ALPN), and hands each connection to
// the h2Server's frames. It returns the server's URL and a net/http Transport
// that trusts it and speaks HTTP/2 to it.
func newH2TLSServer(t *testing.T, serve func(n int, s *h2Stream) bool) (*h2Server, string, *http.Transport) {
	s := &h2Server{serve: serve, tcpServer: &tcpServer{}}
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.EnableHTTP2 = true
	ts.Config.ErrorLog = quietLog()
	// A TLSNextProto of its own keeps net/http's HTTP/2 server out.
	ts.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
		"h2": func(_ *http.Server, conn *tls.Conn, _ http.Handler) {
			s.mu.Lock()
			s.conns++
			n := s.conns
			s.mu.Unlock()
			s.handle(n, conn)
		},
	}
	ts.StartTLS()
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	base := ts.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	return s, ts.URL, base
}

// h2Setup is a loopback HTTP/2 server made of bare frames, over cleartext
// (prior knowledge) or TLS, with a net/http Transport that speaks to it.
type h2Setup struct {
	name  string
	start func(t *testing.T, serve func(n int, s *h2Stream) bool) (srv *h2Server, url string, base *http.Transport)
}

var h2Setups = []h2Setup{
	{"h2c", func(t *testing.T, serve func(n int, s *h2Stream) bool) (*h2Server, string, *http.Transport) {
		srv := newH2Server(t, serve)
		return srv, srv.url(), newH2CBase(t)
	}},
	{"TLS", newH2TLSServer},
}

// A POST without a key that the server processed, then reset with
// PROTOCOL_ERROR, is resent by net/http itself on a new connection (it
// resends on that code, golang/go#47635); that connection's GOAWAY proves
// only that the resend was never processed, not the first copy, so the
// Transport must not send the POST a third time: it is processed once.
func TestHTTP2PostProcessedOnceWhenNetHTTPResendMeetsGOAWAY(t *testing.T) {
	for _, setup := range h2Setups {
		t.Run(setup.name, func(t *testing.T) {
			var mu sync.Mutex
			var processed []string // the body of each request the server acted on
			srv, url, base := setup.start(t, func(n int, s *h2Stream) bool {
				switch n {
				case 1:
					mu.Lock()
					processed = append(processed, "charge")
					mu.Unlock()
					// Done with the connection (so that the resend needs a
					// new one), then the stream's reset.
					s.goAway(s.id, h2NoError)
					s.reset(h2ProtocolError)
					return false
				case 2:
					// The first stream of a new connection, left out of a
					// GOAWAY with an error code: never processed.
					s.goAway(0, h2ProtocolError)
					return true
				}
				mu.Lock()
				processed = append(processed, "charge")
				mu.Unlock()
				s.respond(200, "charged")
				return false
			})
			var retries int
			rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
				Clock: retrytest.NewClock(t), Budget: retryhttp.UnlimitedBudget(),
				OnRetry: func(retryhttp.RetryEvent) { retries++ },
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader("charge"))
			require.NoError(t, err)

			resp, err := rt.RoundTrip(req)

			if resp != nil {
				resp.Body.Close()
			}
			conns, bodies := srv.requests()
			assert.Equal(t, []string{"charge", "charge"}, bodies[:min(2, len(bodies))], "net/http sent the POST and resent it")
			assert.GreaterOrEqual(t, conns, 2, "net/http resent it on a new connection")
			mu.Lock()
			defer mu.Unlock()
			assert.Len(t, processed, 1, "the POST was processed exactly once")
			assert.Zero(t, retries, "retries the Transport made")
			require.Error(t, err)
			assert.ErrorIs(t, err, retryhttp.ErrNotIdempotent)
			assert.Contains(t, err.Error(), "http2: Transport received GOAWAY from server ErrCode:PROTOCOL_ERROR",
				"the attempt ended in net/http's resend, refused by a GOAWAY")
		})
	}
}

// loggingBase is a Base as a user writes one, to log or to count: it wraps
// an *http.Transport and declares so with Unwrap.
type loggingBase struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []string
}

func (l *loggingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(req)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.log = append(l.log, req.Method+" "+err.Error())
	} else {
		l.log = append(l.log, req.Method+" "+resp.Status)
	}
	return resp, err
}

func (l *loggingBase) Unwrap() http.RoundTripper { return l.base }

// opaqueBase wraps a Base without saying what it wraps.
type opaqueBase struct{ base http.RoundTripper }

func (o opaqueBase) RoundTrip(req *http.Request) (*http.Response, error) {
	return o.base.RoundTrip(req)
}

// An HTTP/2 GOAWAY that left out the first stream of a new connection is
// retried over HTTPS through a Base that wraps an *http.Transport and
// declares it with Unwrap, as it is over the *http.Transport itself: both
// show that no proxy's CONNECT refusal can be behind the error's text. A
// Base that hides what it wraps may have a proxy, whose refusal net/http
// reports as bare text, so its error is not read.
func TestHTTP2GoAwayRetriedThroughAWrappedBase(t *testing.T) {
	for _, tt := range []struct {
		name    string
		wrap    func(base http.RoundTripper) http.RoundTripper
		retried bool
	}{
		{"*http.Transport", func(base http.RoundTripper) http.RoundTripper { return base }, true},
		{"a wrapper that declares Unwrap", func(base http.RoundTripper) http.RoundTripper { return &loggingBase{base: base} }, true},
		{"wrappers that declare Unwrap, twice", func(base http.RoundTripper) http.RoundTripper {
			return &loggingBase{base: &loggingBase{base: base}}
		}, true},
		{"a wrapper that declares Unwrap, over a Transport whose Proxy finds none", func(base http.RoundTripper) http.RoundTripper {
			proxied := base.(*http.Transport).Clone()
			proxied.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil } // asks, finds none
			return &loggingBase{base: proxied}
		}, true},
		{"a wrapper that hides what it wraps", func(base http.RoundTripper) http.RoundTripper { return opaqueBase{base} }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, url, base := newH2TLSServer(t, func(n int, s *h2Stream) bool {
				if n == 1 {
					s.goAway(0, h2EnhanceYourCalm)
					return true
				}
				s.respond(200, "ok")
				return false
			})
			rt := &retryhttp.Transport{Base: tt.wrap(base), Policy: retryhttp.Policy{
				Clock: retrytest.NewClock(t), Budget: retryhttp.UnlimitedBudget(),
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
			require.NoError(t, err)

			resp, err := rt.RoundTrip(req)

			_, bodies := srv.requests()
			if !tt.retried {
				require.Error(t, err)
				assert.Equal(t, "http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM", err.Error())
				assert.Len(t, bodies, 1, "requests the server saw")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "ok", readAll(t, resp))
			assert.Len(t, bodies, 2, "requests the server saw: the GOAWAY's, and the retry")
		})
	}
}
