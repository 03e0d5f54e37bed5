package otelretryhttp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/otelretryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goAwayOnceServer serves HTTP/2 over TLS on loopback, written on bare
// frames: the first request's stream, the first of its connection, is left
// out of a GOAWAY with ENHANCE_YOUR_CALM, which net/http does not resend by
// itself and reports as an error of errors.New's type; every later request
// is answered 200 "ok". It returns the server's URL, a net/http Transport
// that trusts it, and the number of requests it has seen so far.
func goAwayOnceServer(t *testing.T) (string, *http.Transport, func() int64) {
	var requests atomic.Int64
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.EnableHTTP2 = true
	// A TLSNextProto of its own keeps net/http's HTTP/2 server out.
	ts.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
		"h2": func(_ *http.Server, conn *tls.Conn, _ http.Handler) {
			r := bufio.NewReader(conn)
			if _, err := io.ReadFull(r, make([]byte, len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))); err != nil {
				return
			}
			writeFrame(conn, 0x4, 0, 0, nil) // SETTINGS
			for {
				var hdr [9]byte
				if _, err := io.ReadFull(r, hdr[:]); err != nil {
					return
				}
				payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
				if _, err := io.ReadFull(r, payload); err != nil {
					return
				}
				typ, flags, id := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&(1<<31-1)
				switch {
				case typ == 0x4 && flags&0x1 == 0: // SETTINGS, to acknowledge
					writeFrame(conn, 0x4, 0x1, 0, nil)
				case typ == 0x1 && flags&0x1 != 0: // HEADERS that end a GET's stream
					if requests.Add(1) == 1 {
						// GOAWAY: last stream 0, ENHANCE_YOUR_CALM; then close.
						writeFrame(conn, 0x7, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, 0xb})
						_ = conn.CloseWrite()
						_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
						_, _ = io.Copy(io.Discard, r)
						return
					}
					writeFrame(conn, 0x1, 0x4, id, []byte{0x88}) // HEADERS :status 200 (static entry 8)
					writeFrame(conn, 0x0, 0x1, id, []byte("ok")) // DATA, END_STREAM
				}
			}
		},
	}
	ts.StartTLS()
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	base := ts.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	return ts.URL, base, requests.Load
}

func writeFrame(w io.Writer, typ, flags byte, id uint32, payload []byte) {
	frame := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	frame = binary.BigEndian.AppendUint32(frame, id)
	_, _ = w.Write(append(frame, payload...))
}

// NewTransport retries an HTTP/2 GOAWAY that left out the first stream of a
// new connection over HTTPS as a retryhttp.Transport over the same
// *http.Transport does, although it sends through otelhttp's Transport: it
// declares the base it wraps, which shows that no proxy's words can be
// behind net/http's error.
func TestHTTP2GoAwayRetriedAsRetryhttpWould(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(h *harness, base http.RoundTripper, p retryhttp.Policy) http.RoundTripper
	}{
		{"retryhttp.Transport", func(_ *harness, base http.RoundTripper, p retryhttp.Policy) http.RoundTripper {
			return &retryhttp.Transport{Base: base, Policy: p}
		}},
		{"otelretryhttp.NewTransport", func(h *harness, base http.RoundTripper, p retryhttp.Policy) http.RoundTripper {
			return otelretryhttp.NewTransport(base, p,
				otelretryhttp.WithTracerProvider(h.tp), otelretryhttp.WithMeterProvider(h.mp))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			url, base, requests := goAwayOnceServer(t)
			rt := tc.make(h, base, retryhttp.Policy{Clock: retrytest.NewClock(t), Budget: retryhttp.UnlimitedBudget()})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			resp, err := get(t, ctx, &http.Client{Transport: rt}, url)

			require.NoError(t, err)
			defer closeResponse(resp)
			assert.Equal(t, 200, resp.StatusCode)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "ok", string(body))
			assert.Equal(t, int64(2), requests(), "requests the server saw: the GOAWAY's, and the retry")
		})
	}
}
