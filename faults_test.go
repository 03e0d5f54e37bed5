package retryhttp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// tcpServer accepts loopback connections and hands each, numbered from 1,
// to a handler on a goroutine of its own, until close closes them all and
// waits for the handlers.
type tcpServer struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  int // connections accepted
	open   map[net.Conn]bool
	closed bool
}

func startTCPServer(t *testing.T, handle func(connNum int, conn *net.TCPConn)) *tcpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &tcpServer{ln: ln, open: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept(handle)
	t.Cleanup(s.close)
	return s
}

func (s *tcpServer) url() string { return "http://" + s.ln.Addr().String() }

func (s *tcpServer) accept(handle func(connNum int, conn *net.TCPConn)) {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.open[conn] = true
		s.conns++
		n := s.conns
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				conn.Close()
				s.mu.Lock()
				delete(s.open, conn)
				s.mu.Unlock()
			}()
			handle(n, conn.(*net.TCPConn))
		}()
	}
}

func (s *tcpServer) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// rawServer is a loopback HTTP/1.1 server written on bare TCP, so that a
// test controls every byte and every reset. Each request is handed to
// serve with its number (from 1), its body already read and recorded.
type rawServer struct {
	*tcpServer
	serve  func(n int, conn *net.TCPConn, w *bufio.Writer, req *http.Request)
	bodies []recordedRequest // guarded by tcpServer.mu
}

type recordedRequest struct {
	method string
	body   []byte
}

func newRawServer(t *testing.T, serve func(n int, conn *net.TCPConn, w *bufio.Writer, req *http.Request)) *rawServer {
	s := &rawServer{serve: serve}
	s.tcpServer = startTCPServer(t, func(_ int, conn *net.TCPConn) { s.handle(conn) })
	return s
}

func (s *rawServer) handle(conn *net.TCPConn) {
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	for {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, recordedRequest{req.Method, body})
		n := len(s.bodies)
		s.mu.Unlock()
		s.serve(n, conn, w, req)
		if w.Flush() != nil || req.Close {
			return
		}
	}
}

func (s *rawServer) requests() []recordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recordedRequest(nil), s.bodies...)
}

// resetConn flushes what w holds and resets the connection.
func resetConn(conn *net.TCPConn, w *bufio.Writer) {
	_ = w.Flush()
	_ = conn.SetLinger(0)
	conn.Close()
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// faultOnFirst serves fault to the first request and 200 "ok" to the rest.
func faultOnFirst(fault func(conn *net.TCPConn, w *bufio.Writer)) func(int, *net.TCPConn, *bufio.Writer, *http.Request) {
	return func(n int, conn *net.TCPConn, w *bufio.Writer, _ *http.Request) {
		if n == 1 {
			fault(conn, w)
			return
		}
		_, _ = w.WriteString(okResponse)
	}
}

// A request of each kind the invariants speak about.
var faultRequests = []struct {
	name     string
	method   string
	body     string
	header   http.Header
	mayRetry bool
}{
	{"GET", "GET", "", nil, true},
	{"PUT with body", "PUT", strings.Repeat("put-body ", 1000), nil, true},
	{"POST without key", "POST", "charge", nil, false},
	{"POST with key", "POST", "charge", http.Header{"Idempotency-Key": {"k-42"}}, true},
}

func TestFaultInjection(t *testing.T) {
	faults := []struct {
		name  string
		serve func(int, *net.TCPConn, *bufio.Writer, *http.Request)
		// wantOK says whether a request that may be retried ends in 200.
		wantOK bool
	}{
		{"reset before the response", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			resetConn(conn, w)
		}), true},
		{"reset after the headers", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\n")
			resetConn(conn, w)
		}), true},
		{"reset in the middle of the body", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("x", 500))
			resetConn(conn, w)
		}), true},
		{"close in the middle of a 200 body", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("x", 500))
			_ = w.Flush()
			conn.Close()
		}), false}, // the headers arrived: the body's error is the caller's to see
		{"headers sent slowly", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			for _, b := range []byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n") {
				if w.WriteByte(b) != nil || w.Flush() != nil {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}), true},
		{"503 body trickled forever", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nTransfer-Encoding: chunked\r\n\r\n")
			for range 1000 { // bounded: about 10 s, far past the test's deadline
				if _, err := w.WriteString("1\r\n.\r\n"); err != nil || w.Flush() != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}), true},
		{"huge 503 body", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 1073741824\r\n\r\n")
			chunk := make([]byte, 64<<10)
			for range 16384 { // 1 GiB at most; the client closes long before
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}), true},
		{"several Retry-After headers", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3600\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
		}), true},
		{"empty Retry-After", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: \r\nContent-Length: 0\r\n\r\n")
		}), true},
		{"invalid Retry-After", faultOnFirst(func(conn *net.TCPConn, w *bufio.Writer) {
			_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: -5, Fri, 99 Xyz 2026\r\nContent-Length: 0\r\n\r\n")
		}), true},
		{"keep-alive connection closed after every answer", func(n int, conn *net.TCPConn, w *bufio.Writer, _ *http.Request) {
			if n == 1 {
				_, _ = w.WriteString("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 4\r\n\r\nbusy")
			} else {
				_, _ = w.WriteString(okResponse)
			}
			_ = w.Flush()
			conn.Close() // without saying "Connection: close"
		}, true},
	}
	for _, fault := range faults {
		for _, rq := range faultRequests {
			t.Run(fault.name+"/"+rq.name, func(t *testing.T) {
				t.Parallel()
				srv := newRawServer(t, fault.serve)
				base, resp, err := sendWithInvariants(t, srv.url(), rq.method, rq.body, rq.header)

				reqs := srv.requests()
				if !rq.mayRetry {
					assert.LessOrEqual(t, len(reqs), 1, "a request that may not be repeated reached the server at most once")
				}
				for i, r := range reqs {
					assert.Equal(t, rq.method, r.method)
					assert.Equal(t, rq.body, string(r.body), "attempt %d sent the body unchanged", i+1)
				}
				if fault.wantOK && rq.mayRetry {
					require.NoError(t, err)
					assert.Equal(t, 200, resp.StatusCode)
					assert.Equal(t, "ok", readAll(t, resp))
				} else if resp != nil {
					// Closed unread, as a caller may: a body trickled
					// forever, or of a gigabyte, would be read until the
					// deadline.
					resp.Body.Close()
				}
				// A discarded body whose drain was abandoned is closed by
				// its drain when the abandoned attempt ends, which may be
				// after the retry, played at once on the fake clock.
				assert.Eventually(t, func() bool { return base.responses() == base.closed() },
					10*time.Second, time.Millisecond, "every response body was closed")
			})
		}
	}
}

// sendWithInvariants sends one request through a Transport with a 3 s
// deadline and checks that it returned within the deadline and a margin. It
// closes nothing: the caller reads and closes the response.
func sendWithInvariants(t *testing.T, url, method, body string, header http.Header) (*closeRecorder, *http.Response, error) {
	t.Helper()
	const deadline, margin = 3 * time.Second, 500 * time.Millisecond
	base := &closeRecorder{base: newBase(t)}
	// The fake clock plays the jitter of Retry-After: 0 at once; the
	// faults play in real time.
	rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		Backoff: noWait, Budget: retryhttp.UnlimitedBudget(), Clock: retrytest.NewClock(t),
	}}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	started := time.Now()
	resp, err := rt.RoundTrip(req)
	assert.Less(t, time.Since(started), deadline+margin, "returned within the deadline")
	return base, resp, err
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestSlowHeadersPastTheDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("real time is what it tests: a 300 ms deadline against headers sent slowly over loopback")
	}
	srv := newRawServer(t, func(n int, conn *net.TCPConn, w *bufio.Writer, _ *http.Request) {
		for _, b := range []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") {
			if w.WriteByte(b) != nil || w.Flush() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // about 4 s in all
		}
	})
	base := &closeRecorder{base: newBase(t)}
	client := &http.Client{Transport: &retryhttp.Transport{Base: base}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	started := time.Now()
	_, err := client.Do(newRequest(t, "GET", srv.url(), nil).WithContext(ctx))

	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(started), 800*time.Millisecond)
	assert.Len(t, srv.requests(), 1)
}

func TestHTTP2Faults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(w http.ResponseWriter, r *http.Request, srv *httptest.Server)
	}{
		{"stream reset", func(w http.ResponseWriter, r *http.Request, _ *httptest.Server) {
			panic(http.ErrAbortHandler) // the HTTP/2 server answers RST_STREAM
		}},
		{"GOAWAY after a 503", func(w http.ResponseWriter, r *http.Request, _ *httptest.Server) {
			// net/http's HTTP/2 server turns Connection: close into GOAWAY.
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
		}},
		{"connection closed mid-request", func(w http.ResponseWriter, r *http.Request, srv *httptest.Server) {
			w.WriteHeader(200)
			http.NewResponseController(w).Flush()
			srv.CloseClientConnections()
			<-r.Context().Done()
		}},
	}
	for _, tt := range tests {
		for _, rq := range faultRequests {
			t.Run(tt.name+"/"+rq.name, func(t *testing.T) {
				var hits atomic.Int32
				var mu sync.Mutex
				var bodies []string
				var srv *httptest.Server
				srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					mu.Lock()
					bodies = append(bodies, string(b))
					mu.Unlock()
					assert.Equal(t, 2, r.ProtoMajor, "served over HTTP/2")
					if hits.Add(1) == 1 {
						tt.fault(w, r, srv)
						return
					}
					_, _ = io.WriteString(w, "ok")
				}))
				srv.EnableHTTP2 = true
				srv.Config.ErrorLog = quietLog()
				srv.StartTLS()
				defer srv.Close()
				base := &closeRecorder{base: srv.Client().Transport}
				defer srv.Client().CloseIdleConnections()
				// The fake clock plays the jitter of Retry-After: 0 at once.
				rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Backoff: noWait, Clock: retrytest.NewClock(t)}}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				var rd io.Reader
				if rq.body != "" {
					rd = strings.NewReader(rq.body)
				}
				req, err := http.NewRequestWithContext(ctx, rq.method, srv.URL, rd)
				require.NoError(t, err)
				for k, v := range rq.header {
					req.Header[k] = v
				}

				resp, err := rt.RoundTrip(req)

				mu.Lock()
				got := append([]string(nil), bodies...)
				mu.Unlock()
				for i, b := range got {
					assert.Equal(t, rq.body, b, "attempt %d sent the body unchanged", i+1)
				}
				if !rq.mayRetry {
					assert.Len(t, got, 1, "a request that may not be repeated reached the server once")
					if resp != nil {
						resp.Body.Close()
					}
				} else if tt.name != "connection closed mid-request" {
					require.NoError(t, err)
					assert.Equal(t, 200, resp.StatusCode)
					assert.Equal(t, "ok", readAll(t, resp))
					assert.Len(t, got, 2)
				} else if resp != nil {
					// The headers came through before the connection died;
					// the broken body is the caller's to see.
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				// As in TestFaultInjection: an abandoned drain closes its
				// body when its attempt ends, maybe after the retry.
				assert.Eventually(t, func() bool { return base.responses() == base.closed() },
					10*time.Second, time.Millisecond, "every response body was closed")
			})
		}
	}
}

// h2Server is a loopback HTTP/2 server over cleartext TCP (prior knowledge,
// which net/http's Transport speaks with Protocols.SetUnencryptedHTTP2),
// written on bare frames with the standard library alone, so that a test
// can send what net/http's own server never does: a GOAWAY before it
// answers, an RST_STREAM with any code, a malformed response. Each request,
// once its stream has ended, is handed to serve with its number across all
// connections (from 1); serve answers on the stream and reports whether to
// close the connection, gracefully, after it.
type h2Server struct {
	*tcpServer
	serve  func(n int, s *h2Stream) (closeConn bool)
	bodies []string // the body of each request, by number; guarded by tcpServer.mu
}

// h2Stream is one request of an h2Server, to be answered.
type h2Stream struct {
	conn int // the connection's number, from 1
	id   uint32
	w    io.Writer
}

// The frame types, flags and error codes of RFC 9113 that h2Server uses.
const (
	h2Data         = 0x0
	h2Headers      = 0x1
	h2RSTStream    = 0x3
	h2Settings     = 0x4
	h2Ping         = 0x6
	h2GoAway       = 0x7
	h2WindowUpdate = 0x8

	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20

	h2NoError          = 0x0
	h2InternalError    = 0x2
	h2RefusedStream    = 0x7
	h2EnhanceYourCalm  = 0xb
	h2HTTP11Required   = 0xd
	h2ClientPrefaceLen = len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
)

func newH2Server(t *testing.T, serve func(n int, s *h2Stream) bool) *h2Server {
	s := &h2Server{serve: serve}
	s.tcpServer = startTCPServer(t, func(n int, conn *net.TCPConn) { s.handle(n, conn) })
	return s
}

// h2Conn is a connection an h2Server serves: TCP, or TLS over it.
type h2Conn interface {
	net.Conn
	CloseWrite() error
}

// handle serves one connection: it reads frames, answers SETTINGS and PING,
// gathers each request's body and hands each finished request to serve.
func (s *h2Server) handle(connNum int, conn h2Conn) {
	r := bufio.NewReader(conn)
	preface := make([]byte, h2ClientPrefaceLen)
	if _, err := io.ReadFull(r, preface); err != nil || string(preface) != "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
		return
	}
	if writeH2Frame(conn, h2Settings, 0, 0, nil) != nil {
		return
	}
	bodies := map[uint32][]byte{}
	for {
		typ, flags, id, payload, err := readH2Frame(r)
		if err != nil {
			return
		}
		var ended bool
		switch typ {
		case h2Settings:
			if flags&h2FlagAck == 0 && writeH2Frame(conn, h2Settings, h2FlagAck, 0, nil) != nil {
				return
			}
		case h2Ping:
			if flags&h2FlagAck == 0 && writeH2Frame(conn, h2Ping, h2FlagAck, 0, payload) != nil {
				return
			}
		case h2Headers: // the request's header block is not needed: no HPACK decoding
			bodies[id] = []byte{}
			ended = flags&h2FlagEndStream != 0
		case h2Data:
			if flags&h2FlagPadded != 0 && len(payload) > 0 {
				payload = payload[1 : len(payload)-int(payload[0])]
			}
			bodies[id] = append(bodies[id], payload...)
			ended = flags&h2FlagEndStream != 0
			if len(payload) > 0 { // give the connection's window back
				if writeH2Frame(conn, h2WindowUpdate, 0, 0, binary.BigEndian.AppendUint32(nil, uint32(len(payload)))) != nil {
					return
				}
			}
		}
		if !ended {
			continue
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, string(bodies[id]))
		n := len(s.bodies)
		s.mu.Unlock()
		delete(bodies, id)
		if s.serve(n, &h2Stream{conn: connNum, id: id, w: conn}) {
			// Close gracefully: the client reads all that was sent, then
			// EOF, however its own last frames cross ours.
			_ = conn.CloseWrite()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(io.Discard, r)
			return
		}
	}
}

func (s *h2Server) requests() (conns int, bodies []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, append([]string(nil), s.bodies...)
}

func readH2Frame(r io.Reader) (typ, flags byte, id uint32, payload []byte, err error) {
	var hdr [9]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return
	}
	length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	typ, flags = hdr[3], hdr[4]
	id = binary.BigEndian.Uint32(hdr[5:]) & (1<<31 - 1)
	payload = make([]byte, length)
	_, err = io.ReadFull(r, payload)
	return
}

func writeH2Frame(w io.Writer, typ, flags byte, id uint32, payload []byte) error {
	frame := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	frame = binary.BigEndian.AppendUint32(frame, id)
	_, err := w.Write(append(frame, payload...))
	return err
}

// hpackLiteral encodes a header field as an HPACK literal without indexing
// and with a literal name (RFC 7541 §6.2.2), for names and values shorter
// than 127 bytes.
func hpackLiteral(name, value string) []byte {
	b := []byte{0, byte(len(name))}
	b = append(b, name...)
	b = append(b, byte(len(value)))
	return append(b, value...)
}

// hpackStatus encodes :status as an HPACK literal without indexing whose
// name is the static table's entry 8.
func hpackStatus(code int) []byte {
	v := strconv.Itoa(code)
	return append([]byte{0x08, byte(len(v))}, v...)
}

// respond answers the stream with status and body.
func (s *h2Stream) respond(status int, body string) {
	flags := byte(h2FlagEndHeaders)
	if body == "" {
		flags |= h2FlagEndStream
	}
	_ = writeH2Frame(s.w, h2Headers, flags, s.id, hpackStatus(status))
	if body != "" {
		_ = writeH2Frame(s.w, h2Data, h2FlagEndStream, s.id, []byte(body))
	}
}

// headers sends a raw header block that ends the stream.
func (s *h2Stream) headers(block []byte) {
	_ = writeH2Frame(s.w, h2Headers, h2FlagEndHeaders|h2FlagEndStream, s.id, block)
}

func (s *h2Stream) reset(code uint32) {
	_ = writeH2Frame(s.w, h2RSTStream, 0, s.id, binary.BigEndian.AppendUint32(nil, code))
}

func (s *h2Stream) goAway(lastStreamID, code uint32) {
	payload := binary.BigEndian.AppendUint32(nil, lastStreamID)
	_ = writeH2Frame(s.w, h2GoAway, 0, 0, binary.BigEndian.AppendUint32(payload, code))
}

// newH2CBase returns a net/http Transport that speaks HTTP/2 over cleartext
// TCP (prior knowledge) and nothing else.
func newH2CBase(t *testing.T) *http.Transport {
	base := newBase(t)
	base.Protocols = new(http.Protocols)
	base.Protocols.SetUnencryptedHTTP2(true)
	return base
}

// errRecorder records the error of each attempt its base returned.
type errRecorder struct {
	base  http.RoundTripper
	mu    sync.Mutex
	calls int
	errs  []string // "" for an attempt that returned a response
}

func (e *errRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := e.base.RoundTrip(req)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	if err != nil {
		e.errs = append(e.errs, err.Error())
	} else {
		e.errs = append(e.errs, "")
	}
	return resp, err
}

func (e *errRecorder) attempts() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.errs...)
}

// hideGetBody sends a request with a body to base without its GetBody, so
// that net/http, unable to replay the body, cannot resend the request by
// itself and returns the error that would have made it: the error that the
// Transport then sees from a Base without resends of its own.
type hideGetBody struct{ base http.RoundTripper }

func (h hideGetBody) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		req = req.Clone(req.Context())
		req.GetBody = nil
	}
	return h.base.RoundTrip(req)
}

// HTTP/2 errors made for real, on the wire, by net/http's client: what
// the Transport sees of each, and whether it retries. The first request is
// the fault, and every later one is answered 200 "ok".
func TestHTTP2WireErrors(t *testing.T) {
	const answered = "ok"
	tests := []struct {
		name  string
		fault func(s *h2Stream) (closeConn bool)
		// hideGetBody keeps net/http from resending a request with a body
		// by itself (see hideGetBody).
		hideGetBody bool
		// netHTTPResends: net/http resends the request by itself, and the
		// Transport sees only the answer.
		netHTTPResends bool
		// wantErr is the first attempt's error, exactly.
		wantErr string
		// retried: the Transport retries the error (a request that may be
		// resent).
		retried bool
		// newConn: the retry goes out on a new connection.
		newConn bool
		// neverSent: the error proves the server never processed the
		// request, so that even one that may not be resent (a POST without
		// a key) is retried.
		neverSent bool
	}{
		{
			name: "GOAWAY before the first stream, ENHANCE_YOUR_CALM",
			fault: func(s *h2Stream) bool {
				s.goAway(0, h2EnhanceYourCalm)
				return true
			},
			wantErr: "http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM",
			retried: true, newConn: true, neverSent: true,
		},
		{
			name: "GOAWAY before the first stream, INTERNAL_ERROR",
			fault: func(s *h2Stream) bool {
				s.goAway(0, h2InternalError)
				return true
			},
			wantErr: "http2: Transport received GOAWAY from server ErrCode:INTERNAL_ERROR",
			retried: true, newConn: true, neverSent: true,
		},
		{
			name: "GOAWAY before the first stream, NO_ERROR",
			fault: func(s *h2Stream) bool {
				s.goAway(0, h2NoError)
				return true
			},
			netHTTPResends: true, // errClientConnGotGoAway
		},
		{
			name: "GOAWAY with the stream, then close without answering",
			fault: func(s *h2Stream) bool {
				s.goAway(s.id, h2NoError)
				return true
			},
			wantErr: `http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`,
			retried: true, newConn: true,
		},
		{
			name:           "REFUSED_STREAM",
			fault:          func(s *h2Stream) bool { s.reset(h2RefusedStream); return false },
			netHTTPResends: true,
		},
		{
			name:        "REFUSED_STREAM, body not replayable by net/http",
			fault:       func(s *h2Stream) bool { s.reset(h2RefusedStream); return false },
			hideGetBody: true,
			wantErr:     "http2: Transport: cannot retry err [stream error: stream ID 1; REFUSED_STREAM; received from peer] after Request.Body was written; define Request.GetBody to avoid this error",
			retried:     true, neverSent: true,
		},
		{
			name:    "RST_STREAM INTERNAL_ERROR before the response",
			fault:   func(s *h2Stream) bool { s.reset(h2InternalError); return false },
			wantErr: "stream error: stream ID 1; INTERNAL_ERROR; received from peer",
			retried: true,
		},
		{
			name:    "RST_STREAM HTTP_1_1_REQUIRED",
			fault:   func(s *h2Stream) bool { s.reset(h2HTTP11Required); return false },
			wantErr: "stream error: stream ID 1; HTTP_1_1_REQUIRED; received from peer",
		},
		{
			name:    "response without :status",
			fault:   func(s *h2Stream) bool { s.headers(hpackLiteral("x-a", "b")); return false },
			wantErr: "stream error: stream ID 1; PROTOCOL_ERROR; malformed response from server: missing status pseudo header",
		},
		{
			name: "response with an invalid header value",
			fault: func(s *h2Stream) bool {
				s.headers(append(hpackStatus(200), hpackLiteral("x-bad", "a\x00b")...))
				return false
			},
			wantErr: `stream error: stream ID 1; PROTOCOL_ERROR; invalid header field value for "x-bad"`,
		},
	}
	for _, tt := range tests {
		for _, rq := range faultRequests {
			t.Run(tt.name+"/"+rq.name, func(t *testing.T) {
				t.Parallel()
				var mu sync.Mutex
				var answeredOn []int // the connection of each request answered
				srv := newH2Server(t, func(n int, s *h2Stream) bool {
					if n == 1 {
						return tt.fault(s)
					}
					mu.Lock()
					answeredOn = append(answeredOn, s.conn)
					mu.Unlock()
					s.respond(200, answered)
					return false
				})
				var base http.RoundTripper = newH2CBase(t)
				if tt.hideGetBody {
					base = hideGetBody{base}
				}
				rec := &errRecorder{base: base}
				rt := &retryhttp.Transport{Base: rec, Policy: retryhttp.Policy{
					Clock: retrytest.NewClock(t), Budget: retryhttp.UnlimitedBudget(),
				}}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var body io.Reader
				if rq.body != "" {
					body = strings.NewReader(rq.body)
				}
				req, err := http.NewRequestWithContext(ctx, rq.method, srv.url(), body)
				require.NoError(t, err)
				for k, v := range rq.header {
					req.Header[k] = v
				}

				resp, err := rt.RoundTrip(req)

				attempts := rec.attempts()
				require.NotEmpty(t, attempts)
				// net/http resends a request without a body by itself.
				resends := tt.netHTTPResends || (tt.hideGetBody && rq.body == "")
				if !resends {
					assert.Equal(t, tt.wantErr, attempts[0], "the first attempt's error, as net/http writes it")
					assert.Equal(t, tt.retried, retryhttp.DefaultRetryable(nil, errors.New(attempts[0])), "the error is classified")
				}
				conns, bodies := srv.requests()
				for i, b := range bodies {
					assert.Equal(t, rq.body, b, "request %d carried the body unchanged", i+1)
				}
				mu.Lock()
				defer mu.Unlock()
				if resends || (tt.retried && (rq.mayRetry || tt.neverSent)) {
					require.NoError(t, err)
					assert.Equal(t, 200, resp.StatusCode)
					assert.Equal(t, answered, readAll(t, resp))
					wantCalls := 2
					if resends {
						wantCalls = 1
					}
					assert.Len(t, attempts, wantCalls, "attempts the Transport made")
					if tt.newConn {
						assert.Equal(t, []int{2}, answeredOn, "answered on a second connection")
					}
					return
				}
				require.Error(t, err)
				assert.Nil(t, resp)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Len(t, attempts, 1, "attempts the Transport made")
				assert.Empty(t, answeredOn, "no request was answered")
				assert.LessOrEqual(t, conns, 1)
			})
		}
	}
}

// A server that restarts: it refuses connections for a while, then answers.
func TestServerRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // down: connections are refused

	clock := retrytest.NewClock(t)
	var restarted sync.Once
	var srv *http.Server
	client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
		Clock: clock, Backoff: noWait, MaxAttempts: 5,
		OnRetry: func(ev retryhttp.RetryEvent) {
			if ev.Attempt == 2 { // back up before the third attempt
				restarted.Do(func() {
					ln, err := net.Listen("tcp", addr)
					require.NoError(t, err)
					srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						_, _ = io.WriteString(w, "up again")
					})}
					go func() { _ = srv.Serve(ln) }()
				})
			}
		},
	}}}
	resp, body, err := do(t, client, newRequest(t, "GET", "http://"+addr, nil))
	require.NoError(t, err)
	require.NotNil(t, srv)
	defer srv.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "up again", body)
	assert.Len(t, clock.Waits(), 2)
}

// A request that may not be resent (a POST without a key) is sent again
// when the failure proves it never left: here, a refused connection to a
// server that starts 100 ms later.
func TestNeverSentPostIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // down: connections are refused

	var posts atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		posts.Add(1)
		_, _ = io.WriteString(w, "charged "+string(body))
	})}
	defer srv.Close()
	// The server comes up while the Transport waits to retry, on a fake
	// clock: the retry finds it up, however long the first attempt took.
	var restart sync.Once
	clock := hookedClock{Clock: retrytest.NewClock(t), before: func() {
		restart.Do(func() {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("restart: %v", err)
				return
			}
			go func() { _ = srv.Serve(ln) }()
		})
	}}
	var retries []retryhttp.RetryEvent
	var hook giveUps
	client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
		Clock:    clock,
		Backoff:  func() backoff.BackOff { return backoff.NewConstantBackOff(250 * time.Millisecond) },
		OnRetry:  func(ev retryhttp.RetryEvent) { retries = append(retries, ev) },
		OnGiveUp: hook.record,
	}}}

	resp, body, err := do(t, client, newRequest(t, "POST", "http://"+addr, strings.NewReader("once")))

	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "charged once", body)
	assert.Equal(t, int32(1), posts.Load())
	require.NotEmpty(t, retries, "retried")
	assert.ErrorIs(t, retries[0].Err, syscall.ECONNREFUSED)
	assert.Equal(t, 2, retryhttp.Attempt(resp.Request.Context()), "answered on the retry")
	assert.Empty(t, hook.all())
}

// A never-sent retry cost the server nothing: it takes no token from the
// Budget, even an empty one, and MaxAttempts and the other limits end it
// with their own reasons.
func TestNeverSentRetryTakesNoToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	for _, tt := range []struct {
		name         string
		policy       retryhttp.Policy
		wantReason   error
		wantAttempts int
	}{
		{"budget empty", retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0)}, retryhttp.ErrAttemptsUsedUp, retryhttp.DefaultMaxAttempts},
		{"budget of two", retryhttp.Policy{Budget: retryhttp.NewBudget(0, 2)}, retryhttp.ErrAttemptsUsedUp, retryhttp.DefaultMaxAttempts},
		{"attempts used up", retryhttp.Policy{MaxAttempts: 2}, retryhttp.ErrAttemptsUsedUp, 2},
		{"max elapsed", retryhttp.Policy{MaxAttempts: 100, MaxElapsed: 10 * time.Second, Backoff: func() backoff.BackOff { return backoff.NewConstantBackOff(3 * time.Second) }}, retryhttp.ErrMaxElapsed, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var hook giveUps
			tt.policy.OnGiveUp = hook.record
			if tt.policy.Backoff == nil {
				tt.policy.Backoff = noWait
			}
			client, _ := newClient(t, tt.policy)
			tokens := tt.policy.Budget.Tokens()

			_, err := client.Do(newRequest(t, "POST", "http://"+addr, strings.NewReader("x")))

			if tt.policy.Budget != nil {
				assert.Equal(t, tokens, tt.policy.Budget.Tokens(), "no token taken")
			}
			var giveUp *retryhttp.GiveUpError
			require.ErrorAs(t, err, &giveUp)
			assert.Same(t, tt.wantReason, giveUp.Reason)
			assert.Equal(t, tt.wantAttempts, giveUp.Attempts)
			assert.ErrorIs(t, err, syscall.ECONNREFUSED)
			require.Len(t, hook.all(), 1)
		})
	}
}

// A POST whose connection is reset after the request was written may have
// been processed: exactly one attempt, whatever the error says.
func TestPostResetAfterWritingIsNotRetried(t *testing.T) {
	srv := newRawServer(t, func(_ int, conn *net.TCPConn, w *bufio.Writer, _ *http.Request) {
		resetConn(conn, w) // the whole request was read
	})
	var hook giveUps
	client, _ := newClient(t, retryhttp.Policy{OnGiveUp: hook.record, Budget: retryhttp.UnlimitedBudget()})

	resp, err := client.Do(newRequest(t, "POST", srv.url(), strings.NewReader("charge")))

	require.Error(t, err, "%v", resp)
	assert.Len(t, srv.requests(), 1, "one attempt")
	var giveUp *retryhttp.GiveUpError
	require.ErrorAs(t, err, &giveUp)
	assert.Same(t, retryhttp.ErrNotIdempotent, giveUp.Reason)
	assert.Equal(t, 1, giveUp.Attempts)
	require.Len(t, hook.all(), 1)
}

// Soak: many requests from many goroutines through one Transport against a
// server that mixes every outcome.
func TestSoak(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	requests, goroutines := 10_000, 200
	if testing.Short() {
		requests, goroutines = 1_000, 50
	}
	const ratio, burst, maxAttempts = 0.1, 10, 4

	// Each request's path selects its script; the outcome it should end
	// with follows from the script and the attempts allowed.
	scripts := [][]retrytest.Answer{
		{retrytest.OK("a")},
		{retrytest.Unavailable(2 * time.Second), retrytest.OK("b")},
		{retrytest.UnavailableUntil(3 * time.Second), retrytest.OK("c")},
		{retrytest.TooManyRequests(time.Second), retrytest.Drop(), retrytest.OK("d")},
		{retrytest.Drop(), retrytest.OK("e")},
		{retrytest.Reply(500, "f")},
		{retrytest.OK("g")},
		{retrytest.OK("h")},
	}
	wantBody := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	clock := retrytest.NewClock(t)
	srv := retrytest.NewServer(t).UseClock(clock)
	for i := range requests {
		srv.On(fmt.Sprintf("/%d", i), scripts[i%len(scripts)]...)
	}
	// The fixed bucket, whose bound holds over the whole run; the window
	// Budget's own bound is checked in budget_test.go.
	budget := retryhttp.NewFixedBudget(ratio, burst)
	var blind atomic.Int32
	base := newBase(t)
	base.DisableKeepAlives = true // so that net/http never resends by itself and every attempt is the Transport's
	base.MaxConnsPerHost = 64
	rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		Clock: clock, MaxAttempts: maxAttempts, Budget: budget,
		MaxElapsed: 1000 * time.Hour, MaxRetryAfter: time.Minute,
		// Every retry here follows an attempt that reached the server, so
		// every one is charged, a named wait or not.
		OnRetry: func(retryhttp.RetryEvent) { blind.Add(1) },
	}}
	client := &http.Client{Transport: rt}

	// Watch the budget while the soak runs.
	stop := make(chan struct{})
	var watch sync.WaitGroup
	var minTokens, maxTokens atomic.Value
	minTokens.Store(float64(burst))
	maxTokens.Store(float64(0))
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tok := budget.Tokens()
			if tok < minTokens.Load().(float64) {
				minTokens.Store(tok)
			}
			if tok > maxTokens.Load().(float64) {
				maxTokens.Store(tok)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})

	var next atomic.Int64
	var wrong, answered atomic.Int32
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				ok, success := soakOutcomeOK(client, srv.URL, i, wantBody[i%len(scripts)])
				if !ok {
					wrong.Add(1)
				}
				if success {
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	watch.Wait()

	assert.Zero(t, wrong.Load(), "requests that ended with an outcome their script does not allow")
	assert.GreaterOrEqual(t, minTokens.Load().(float64), 0.0)
	assert.LessOrEqual(t, maxTokens.Load().(float64), float64(burst))
	retries := srv.Count() - requests
	// The budget gains ratio for every request answered with a response
	// not retried (a success), so charged retries are bounded by those, and
	// so by the requests; a retry at a time the server named is charged
	// like any other.
	bound := burst + ratio*float64(answered.Load())
	assert.LessOrEqual(t, float64(blind.Load()), bound, "blind retries within the budget")
	assert.LessOrEqual(t, bound, burst+ratio*float64(requests))
	// Half the requests fail at first and want a blind retry, far more than
	// the budget holds, so the budget, not the scripts, sets the count.
	assert.GreaterOrEqual(t, float64(blind.Load()), 0.9*bound, "the budget was spent")
	t.Logf("%d requests from %d goroutines, %d answered: the server saw %d attempts (%d retries, %d blind, bound %.0f)",
		requests, goroutines, answered.Load(), srv.Count(), retries, blind.Load(), bound)
}

// soakOutcomeOK sends request i and reports whether its outcome is one its
// script allows (the final body after retries, or, when the budget ran out,
// an answer the script gave on the way), and whether it was a success: a
// response the Transport does not retry.
func soakOutcomeOK(client *http.Client, url string, i int, final string) (ok, success bool) {
	resp, err := client.Get(fmt.Sprintf("%s/%d", url, i))
	if err != nil {
		// Only a dropped connection, which the scripts ending in "d" and
		// "e" have, may end a request in an error.
		return (final == "d" || final == "e") && strings.Contains(err.Error(), "EOF"), false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, false
	}
	switch resp.StatusCode {
	case 200:
		return string(body) == final, true
	case 500:
		return final == "f", true
	case 503, 429:
		return final != "a" && final != "e" && final != "f" && final != "g" && final != "h", false
	}
	return false, false
}

func TestRequestBodyIsNotBuffered(t *testing.T) {
	// A body that can be read once, with GetBody to replay it: the Transport
	// must stream it, never read it itself.
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("done"))
	client, _ := newClient(t, retryhttp.Policy{})
	payload := bytes.Repeat([]byte{'z'}, 1<<20)
	var opened atomic.Int32
	req := newRequest(t, "PUT", srv.URL, bytes.NewReader(payload))
	req.GetBody = func() (io.ReadCloser, error) {
		opened.Add(1)
		return io.NopCloser(bytes.NewReader(payload)), nil
	}
	_, _, err := do(t, client, req)
	require.NoError(t, err)
	assert.EqualValues(t, 1, opened.Load(), "the retry's body came from GetBody")
	for _, r := range srv.Requests() {
		assert.Len(t, r.Body, len(payload))
	}
}

// A dial error proves nothing when net/http had already sent the request
// on another connection and resent it by itself: it resends even a POST
// without a key after an HTTP/2 RST_STREAM PROTOCOL_ERROR (golang/go#47635),
// which a server may send after processing the request, and the dial of
// that resend can fail. The POST went out once and must not go out again.
func TestNeverSentDialAfterNetHTTPResent(t *testing.T) {
	const protocolError = 0x1
	var srv *h2Server
	srv = newH2Server(t, func(n int, s *h2Stream) bool {
		srv.ln.Close() // the resend's dial is refused
		s.goAway(s.id, h2NoError)
		s.reset(protocolError)
		return true
	})
	rec := &errRecorder{base: newH2CBase(t)}
	rt := &retryhttp.Transport{Base: rec, Policy: retryhttp.Policy{
		Clock: retrytest.NewClock(t), Budget: retryhttp.UnlimitedBudget(),
	}}
	req, err := http.NewRequest("POST", srv.url(), strings.NewReader("charge"))
	require.NoError(t, err)

	resp, err := rt.RoundTrip(req)

	require.Error(t, err)
	assert.Nil(t, resp)
	attempts := rec.attempts()
	require.NotEmpty(t, attempts)
	assert.Contains(t, attempts[0], "connection refused", "net/http's resend could not dial")
	_, bodies := srv.requests()
	assert.Equal(t, []string{"charge"}, bodies, "the POST reached the server once")
	assert.Len(t, attempts, 1, "the Transport sent the POST once")
}
