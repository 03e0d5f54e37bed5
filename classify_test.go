package retryhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
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
)

// The Go release whose net/http the tables below were read from. Their
// file:line references hold for it alone; TestHTTP2ErrorTextsInGoSource
// checks them against it, and against any other release checks only that
// the texts are still there.
const http2SourceRelease = "go1.26.8"

// srcLine is a Go string literal on one line of net/http's source, under
// $GOROOT/src/net/http.
type srcLine struct {
	file    string
	line    int
	literal string // as written in the source, quotes included
}

// Where the parts of a stream error's text come from.
var (
	// h2_bundle.go:1412 (go1.26.8): http2StreamError.Error, with a Cause
	streamErrorWithCause = srcLine{"h2_bundle.go", 1412, `"stream error: stream ID %d; %v; %v"`}
	// h2_bundle.go:1414 (go1.26.8): http2StreamError.Error, without one
	streamErrorNoCause = srcLine{"h2_bundle.go", 1414, `"stream error: stream ID %d; %v"`}
	// h2_bundle.go:1404 (go1.26.8): http2errFromPeer, the Cause that
	// processResetStream (h2_bundle.go:10261) gives a received RST_STREAM
	errFromPeer = srcLine{"h2_bundle.go", 1404, `"received from peer"`}
)

// http2ErrorTexts are the errors net/http's HTTP/2 client returns from
// RoundTrip for a failed request (and one it wraps them in), exactly as
// go1.26.8 writes them, each with whether it is retried and why.
var http2ErrorTexts = []struct {
	text  string
	retry bool
	src   []srcLine
}{
	// GOAWAYs. The server's last stream ID is below the request's for the
	// first two: never processed, retried whatever the code.

	// h2_bundle.go:8224 (go1.26.8): setGoAway, stream 1 and a code other than
	// NO_ERROR; net/http does not resend it itself.
	{"http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM", true,
		[]srcLine{{"h2_bundle.go", 8224, `"http2: Transport received GOAWAY from server ErrCode:%v"`}}},
	{"http2: Transport received GOAWAY from server ErrCode:PROTOCOL_ERROR", true, nil},
	{"http2: Transport received GOAWAY from server ErrCode:INTERNAL_ERROR", true, nil},
	{"http2: Transport received GOAWAY from server ErrCode:unknown error code 0x2a", true, nil},
	// h2_bundle.go:7961 (go1.26.8): errClientConnGotGoAway, raised at 8228
	// for every other stream; net/http resends it itself when it can.
	{"http2: Transport received Server's graceful shutdown GOAWAY", true,
		[]srcLine{{"h2_bundle.go", 7961, `"http2: Transport received Server's graceful shutdown GOAWAY"`}}},
	// h2_bundle.go:9436 (go1.26.8): http2GoAwayError, the connection closed
	// after a GOAWAY that included the request's stream: it went away under
	// a request the server may have processed, like an EOF on HTTP/1.
	{`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`, true,
		[]srcLine{{"h2_bundle.go", 9436, `"http2: server sent GOAWAY and closed the connection; LastStreamID=%v, ErrCode=%v, debug=%q"`}}},
	{`http2: server sent GOAWAY and closed the connection; LastStreamID=5, ErrCode=INTERNAL_ERROR, debug="restarting"`, true, nil},

	// The connection, not the request.

	// h2_bundle.go:7959 (go1.26.8): errClientConnUnusable, the connection
	// could not take the request (closed, or going away): not sent. net/http
	// resends it by itself up to seven times, even without GetBody, and its
	// text is the reason phrase of a proxy's refusal just as well: not
	// retried.
	{"http2: client conn not usable", false,
		[]srcLine{{"h2_bundle.go", 7959, `"http2: client conn not usable"`}}},
	// h2_bundle.go:7960 (go1.26.8): errClientConnNotEstablished, the
	// connection closed before its first request was sent.
	{"http2: client conn could not be established", true,
		[]srcLine{{"h2_bundle.go", 7960, `"http2: client conn could not be established"`}}},
	// h2_bundle.go:7958 (go1.26.8): errClientConnClosed, the connection
	// closed while the request body was being written (h2_bundle.go:9294).
	{"http2: client conn is closed", true,
		[]srcLine{{"h2_bundle.go", 7958, `"http2: client conn is closed"`}}},
	// h2_bundle.go:8555 (go1.26.8): closeForLostPing, the health check's
	// ping went unanswered.
	{"http2: client connection lost", true,
		[]srcLine{{"h2_bundle.go", 8555, `"http2: client connection lost"`}}},
	// h2_bundle.go:7962 (go1.26.8): errClientConnForceClosed, which
	// net/http also gives every other request on a connection whose write
	// failed (cc.Close at h2_bundle.go:9032).
	{"http2: client connection force closed via ClientConn.Close", true,
		[]srcLine{{"h2_bundle.go", 7962, `"http2: client connection force closed via ClientConn.Close"`}}},

	// RST_STREAM received from the server: streamErrorWithCause and
	// errFromPeer, the code's name from http2errCodeName
	// (h2_bundle.go:1355-1368). A code that says the stream failed on the
	// server's side is retried; one that blames the client's frames is not.
	{"stream error: stream ID 1; REFUSED_STREAM; received from peer", true,
		[]srcLine{streamErrorWithCause, errFromPeer, {"h2_bundle.go", 1362, `"REFUSED_STREAM"`}}},
	{"stream error: stream ID 3; INTERNAL_ERROR; received from peer", true,
		[]srcLine{{"h2_bundle.go", 1357, `"INTERNAL_ERROR"`}}},
	{"stream error: stream ID 5; CANCEL; received from peer", true,
		[]srcLine{{"h2_bundle.go", 1363, `"CANCEL"`}}},
	{"stream error: stream ID 7; NO_ERROR; received from peer", true,
		[]srcLine{{"h2_bundle.go", 1355, `"NO_ERROR"`}}},
	{"stream error: stream ID 9; PROTOCOL_ERROR; received from peer", true,
		[]srcLine{{"h2_bundle.go", 1356, `"PROTOCOL_ERROR"`}}},
	{"stream error: stream ID 11; CONNECT_ERROR; received from peer", true,
		[]srcLine{{"h2_bundle.go", 1365, `"CONNECT_ERROR"`}}},
	{"stream error: stream ID 13; ENHANCE_YOUR_CALM; received from peer", true,
		[]srcLine{{"h2_bundle.go", 1366, `"ENHANCE_YOUR_CALM"`}}},
	{"stream error: stream ID 1; FLOW_CONTROL_ERROR; received from peer", false,
		[]srcLine{{"h2_bundle.go", 1358, `"FLOW_CONTROL_ERROR"`}}},
	{"stream error: stream ID 1; SETTINGS_TIMEOUT; received from peer", false,
		[]srcLine{{"h2_bundle.go", 1359, `"SETTINGS_TIMEOUT"`}}},
	{"stream error: stream ID 1; STREAM_CLOSED; received from peer", false,
		[]srcLine{{"h2_bundle.go", 1360, `"STREAM_CLOSED"`}}},
	{"stream error: stream ID 1; FRAME_SIZE_ERROR; received from peer", false,
		[]srcLine{{"h2_bundle.go", 1361, `"FRAME_SIZE_ERROR"`}}},
	{"stream error: stream ID 1; COMPRESSION_ERROR; received from peer", false,
		[]srcLine{{"h2_bundle.go", 1364, `"COMPRESSION_ERROR"`}}},
	{"stream error: stream ID 1; INADEQUATE_SECURITY; received from peer", false,
		[]srcLine{{"h2_bundle.go", 1367, `"INADEQUATE_SECURITY"`}}},
	{"stream error: stream ID 1; HTTP_1_1_REQUIRED; received from peer", false,
		[]srcLine{{"h2_bundle.go", 1368, `"HTTP_1_1_REQUIRED"`}}},
	// h2_bundle.go:1375 (go1.26.8): http2ErrCode.String of a code it does
	// not know: not foreseen, so not retried.
	{"stream error: stream ID 1; unknown error code 0xe; received from peer", false,
		[]srcLine{{"h2_bundle.go", 1375, `"unknown error code 0x%x"`}}},

	// Stream errors the client raised itself, about what the server sent:
	// no "received from peer". Resending gets the same malformed answer.

	// h2_bundle.go:9680 (go1.26.8), made a stream error at 9647.
	{"stream error: stream ID 1; PROTOCOL_ERROR; malformed response from server: missing status pseudo header", false,
		[]srcLine{streamErrorWithCause, {"h2_bundle.go", 9680, `"malformed response from server: missing status pseudo header"`}}},
	// h2_bundle.go:9684 (go1.26.8)
	{"stream error: stream ID 1; PROTOCOL_ERROR; malformed response from server: malformed non-numeric status pseudo header", false,
		[]srcLine{{"h2_bundle.go", 9684, `"malformed response from server: malformed non-numeric status pseudo header"`}}},
	// h2_bundle.go:9621 (go1.26.8)
	{"stream error: stream ID 3; PROTOCOL_ERROR; protocol error: headers after END_STREAM", false,
		[]srcLine{{"h2_bundle.go", 9621, `"protocol error: headers after END_STREAM"`}}},
	// h2_bundle.go:1463 (go1.26.8): the Framer's detail (h2_bundle.go:3262)
	// for a header the server sent; its name is the server's, quoted.
	{`stream error: stream ID 1; PROTOCOL_ERROR; invalid header field value for "x-bad"`, false,
		[]srcLine{{"h2_bundle.go", 1463, `"invalid header field value for %q"`}}},
	// h2_bundle.go:1457 (go1.26.8)
	{`stream error: stream ID 1; PROTOCOL_ERROR; invalid header field name "Bad Name"`, false,
		[]srcLine{{"h2_bundle.go", 1457, `"invalid header field name %q"`}}},
	// h2_bundle.go:10377 (go1.26.8): errResponseHeaderListSize
	{"stream error: stream ID 1; PROTOCOL_ERROR; http2: response header list larger than advertised limit", false,
		[]srcLine{{"h2_bundle.go", 10377, `"http2: response header list larger than advertised limit"`}}},
	// streamErrorNoCause: DATA before HEADERS (h2_bundle.go:9983), or a
	// flow-control violation by the server (h2_bundle.go:10241).
	{"stream error: stream ID 3; PROTOCOL_ERROR", false, []srcLine{streamErrorNoCause}},
	{"stream error: stream ID 1; FLOW_CONTROL_ERROR", false, nil},
	{"stream error: stream ID 1; REFUSED_STREAM", false, nil}, // no such text in go1.26.8: a received reset says so

	// Other errors of the HTTP/2 client that are not retried.

	// h2_bundle.go:1390 (go1.26.8): http2ConnectionError, the client found
	// the server's frames malformed and closed the connection.
	{"connection error: PROTOCOL_ERROR", false,
		[]srcLine{{"h2_bundle.go", 1390, `"connection error: %s"`}}},
	// h2_bundle.go:3819 (go1.26.8): errTimeout, Transport.ResponseHeaderTimeout,
	// a limit of the caller's, as net/http's HTTP/1 one is.
	{"http2: timeout awaiting response headers", false,
		[]srcLine{{"h2_bundle.go", 3819, `"http2: timeout awaiting response headers"`}}},
	// h2_bundle.go:8564 (go1.26.8): errRequestCanceled
	{"net/http: request canceled", false,
		[]srcLine{{"h2_bundle.go", 8564, `"net/http: request canceled"`}}},
	// h2_bundle.go:9101 (go1.26.8): errReqBodyTooLong, the caller's mistake
	{"http2: request body larger than specified content length", false,
		[]srcLine{{"h2_bundle.go", 9101, `"http2: request body larger than specified content length"`}}},
	// h2_bundle.go:7886, 7889, 8060 (go1.26.8): configuration
	{"http2: unencrypted HTTP/2 not enabled", false,
		[]srcLine{{"h2_bundle.go", 7886, `"http2: unencrypted HTTP/2 not enabled"`}}},
	{"http2: unsupported scheme", false,
		[]srcLine{{"h2_bundle.go", 7889, `"http2: unsupported scheme"`}}},
	{"http2: could not negotiate protocol mutually", false,
		[]srcLine{{"h2_bundle.go", 8060, `"http2: could not negotiate protocol mutually"`}}},

	// h2_bundle.go:7998 (go1.26.8): shouldRetryRequest, when net/http would
	// resend but the body cannot be replayed by it (no GetBody). It wraps the
	// error with %v, which decides.
	{"http2: Transport: cannot retry err [stream error: stream ID 1; REFUSED_STREAM; received from peer] after Request.Body was written; define Request.GetBody to avoid this error", true,
		[]srcLine{{"h2_bundle.go", 7998, `"http2: Transport: cannot retry err [%v] after Request.Body was written; define Request.GetBody to avoid this error"`}}},
	{"http2: Transport: cannot retry err [http2: Transport received Server's graceful shutdown GOAWAY] after Request.Body was written; define Request.GetBody to avoid this error", true, nil},

	// Text the server chose, which net/http quotes, never passes for an
	// error of the client.
	{`stream error: stream ID 1; PROTOCOL_ERROR; invalid header field name "x stream error: stream ID 1; REFUSED_STREAM; received from peer"`, false, nil},
	{`stream error: stream ID 1; PROTOCOL_ERROR; invalid header field value for "http2: client connection lost"`, false, nil},
	{`stream error: stream ID 1; PROTOCOL_ERROR; invalid header field value for "a \"http2: client conn not usable"`, false, nil},
	// Only a whole message counts, never text inside one.
	{`"stream error: stream ID 1; REFUSED_STREAM; received from peer`, false, nil},
	{`malformed MIME header line: "http: server closed idle connection"`, false, nil},
	{"net/http: HTTP/1.x transport connection broken: malformed MIME header: missing colon: \"http2: client connection lost\"", false, nil},
	{"x http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=\"\"", false, nil},
	// Almost a received reset.
	{"stream error: stream ID ; REFUSED_STREAM; received from peer", false, nil},
	{"stream error: stream ID 1;REFUSED_STREAM; received from peer", false, nil},
	{"stream error: stream ID 1; REFUSED_STREAM; received from peers", false, nil},
	{"stream error: stream ID 1; REFUSED_STREAM; received from", false, nil},
	{"stream error: stream ID 1; PROTOCOL_ERROR; x; stream error: stream ID 1; CANCEL; received from peer", false, nil},
	// net/http's HTTP/1 errServerClosedIdle, whole.
	{"http: server closed idle connection", true, nil},
}

// wrappings are the ways an HTTP/2 error reaches the Policy: as it is, in
// the *url.Error of http.Client, or wrapped by another transport with %w.
// (One that keeps only the text, inside a message of its own, hides it: a
// match is of a whole message.)
var wrappings = []struct {
	name string
	wrap func(error) error
}{
	{"bare", func(err error) error { return err }},
	{"url.Error", func(err error) error {
		return &url.Error{Op: "Get", URL: "https://example.com/a?b=c", Err: err}
	}},
	{"wrapped", func(err error) error { return fmt.Errorf("tracing transport: %w", err) }},
	{"joined", func(err error) error { return errors.Join(errors.New("other"), err) }},
}

func TestClassifyHTTP2Errors(t *testing.T) {
	for _, tt := range http2ErrorTexts {
		for _, w := range wrappings {
			t.Run(w.name+"/"+tt.text, func(t *testing.T) {
				err := w.wrap(errors.New(tt.text))
				assert.Equal(t, tt.retry, hasNetHTTPText(err, netHTTPBroken), "hasNetHTTPText")
				assert.Equal(t, tt.retry, isConnectionFailure(err), "isConnectionFailure")
				assert.Equal(t, tt.retry, DefaultRetryable(nil, err), "DefaultRetryable")
				assert.Equal(t, tt.retry, RetryStatuses(500)(nil, err), "RetryStatuses")
			})
		}
	}
}

// A context's error ends the request whatever HTTP/2 error came with it.
func TestClassifyHTTP2ErrorsWithContextErrors(t *testing.T) {
	for _, ctxErr := range []error{context.Canceled, context.DeadlineExceeded} {
		err := fmt.Errorf("%w: %w", errors.New("http2: client connection lost"), ctxErr)
		assert.True(t, hasNetHTTPText(err, netHTTPBroken))
		assert.False(t, isConnectionFailure(err), "%v", err)
	}
}

// The URL of a *url.Error is quoted, and so cannot make an error retried.
func TestClassifyHTTP2IgnoresQuotedURL(t *testing.T) {
	err := &url.Error{Op: "Get", URL: "https://h/http2: client conn not usable/stream error: stream ID 1; REFUSED_STREAM; received from peer",
		Err: errors.New("http2: timeout awaiting response headers")}
	assert.False(t, isConnectionFailure(err), "%v", err)
	err.Err = errors.New("http2: client connection lost")
	assert.True(t, isConnectionFailure(err), "%v", err)
}

// Every text of http2ErrorTexts comes from net/http's source: this notices
// when a Go upgrade changes one. For http2SourceRelease it checks the exact
// file and line of each literal; for any other release, that the literal is
// still somewhere in net/http, which is what the classification rests on.
func TestHTTP2ErrorTextsInGoSource(t *testing.T) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("no go command to find GOROOT: %v", err)
	}
	root := filepath.Join(strings.TrimSpace(string(out)), "src", "net", "http")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("no net/http source: %v", err)
	}
	exact := runtime.Version() == http2SourceRelease
	lines := map[string][]string{} // file name (relative to root) to its lines
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines[rel] = append(lines[rel], sc.Text())
		}
		return sc.Err()
	}))
	refs := []srcLine{streamErrorWithCause, streamErrorNoCause, errFromPeer}
	for _, tt := range http2ErrorTexts {
		refs = append(refs, tt.src...)
	}
	for _, ref := range refs {
		_, err := strconv.Unquote(ref.literal)
		require.NoError(t, err, "%s is a Go string literal", ref.literal)
		if exact {
			l := lines[ref.file]
			if assert.Less(t, ref.line-1, len(l), "%s:%d exists", ref.file, ref.line) {
				assert.Contains(t, l[ref.line-1], ref.literal, "%s:%d in %s", ref.file, ref.line, http2SourceRelease)
			}
			continue
		}
		var found []string
		for file, l := range lines {
			for i, text := range l {
				if strings.Contains(text, ref.literal) {
					found = append(found, fmt.Sprintf("%s:%d", file, i+1))
				}
			}
		}
		assert.NotEmpty(t, found, "%s, at %s:%d in %s, is gone from net/http in %s: read its HTTP/2 client again and update classify.go's tables",
			ref.literal, ref.file, ref.line, http2SourceRelease, runtime.Version())
		if here := fmt.Sprintf("%s:%d", ref.file, ref.line); len(found) > 0 && !slices.Contains(found, here) {
			t.Logf("%s: at %s in %s, now at %v", ref.literal, here, http2SourceRelease, found)
		}
	}
}

// What a server or a proxy writes never decides a retry, however it is
// worded: a malformed header line that reads like net/http's own error,
// and a proxy's refusal of a CONNECT whose reason phrase does. Each gets
// exactly one attempt over real loopback connections.
func TestPeerTextNeverDecidesARetry(t *testing.T) {
	policy := Policy{Budget: UnlimitedBudget(), Backoff: func() backoff.BackOff { return &backoff.ZeroBackOff{} }}

	t.Run("malformed header line", func(t *testing.T) {
		for _, line := range []string{
			"server closed idle connection",
			// A header block may not begin with a folded line.
			" http: server closed idle connection",
			" http2: client connection lost",
			" stream error: stream ID 1; REFUSED_STREAM; received from peer",
			"x-other", // a different malformed line, for comparison
		} {
			t.Run(line, func(t *testing.T) {
				var requests atomic.Int32
				addr := serveTCP(t, func(conn net.Conn) {
					r := bufio.NewReader(conn)
					for {
						req, err := http.ReadRequest(r)
						if err != nil {
							return
						}
						_, _ = io.Copy(io.Discard, req.Body)
						requests.Add(1)
						_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\n"+line+"\r\nContent-Length: 0\r\n\r\n")
					}
				})
				base := &http.Transport{}
				defer base.CloseIdleConnections()
				rt := &Transport{Base: base, Policy: policy}

				_, err := rt.RoundTrip(httptest.NewRequest("GET", "http://"+addr+"/", nil).WithContext(context.Background()))

				require.Error(t, err)
				assert.Contains(t, err.Error(), "malformed MIME header")
				assert.Equal(t, int32(1), requests.Load(), "attempts")
			})
		}
	})

	t.Run("proxy refuses CONNECT", func(t *testing.T) {
		for _, reason := range []string{
			"http2: client conn not usable",
			"http: server closed idle connection",
			"http2: client connection lost",
			"http2: Transport received GOAWAY from server ErrCode:NO_ERROR",
			"stream error: stream ID 1; REFUSED_STREAM; received from peer",
			"Forbidden", // a plain refusal, for comparison
		} {
			for _, tc := range []struct {
				method  string
				wrapped bool // a Base that hides its *http.Transport, as otelhttp's does
				// wrapsErr: a Base that also wraps the errors it returns
				// with %w, as many tracing and logging transports do.
				wrapsErr bool
				// unwraps: a Base that wraps it and declares so (Unwrap),
				// which shows the proxy.
				unwraps bool
			}{{"GET", false, false, false}, {"POST", false, false, false}, {"GET", true, false, false}, {"GET", true, true, false}, {"POST", true, true, false}, {"GET", false, false, true}, {"POST", false, false, true}} {
				method := tc.method
				t.Run(fmt.Sprintf("%s wrapped=%v wrapsErr=%v unwraps=%v %s", method, tc.wrapped, tc.wrapsErr, tc.unwraps, reason), func(t *testing.T) {
					var connects atomic.Int32
					addr := serveTCP(t, func(conn net.Conn) {
						req, err := http.ReadRequest(bufio.NewReader(conn))
						if err != nil || req.Method != "CONNECT" {
							return
						}
						connects.Add(1)
						_, _ = io.WriteString(conn, "HTTP/1.1 403 "+reason+"\r\nContent-Length: 0\r\n\r\n")
					})
					base := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
					defer base.CloseIdleConnections()
					var giveUps atomic.Int32
					p := policy
					p.OnGiveUp = func(GiveUpEvent) { giveUps.Add(1) }
					rt := &Transport{Base: base, Policy: p}
					if tc.wrapped {
						rt.Base = wrappedBase{base}
					}
					if tc.unwraps {
						rt.Base = unwrappingBase{base}
					}
					want := reason
					if tc.wrapsErr {
						rt.Base = errWrappingBase{base}
						want = "traced: " + reason
					}

					_, err := rt.RoundTrip(httptest.NewRequest(method, "https://origin.test/", nil).WithContext(context.Background()))

					require.Error(t, err)
					assert.Equal(t, want, err.Error(), "the error is the proxy's reason phrase, as net/http makes it")
					assert.Equal(t, int32(1), connects.Load(), "attempts")
					assert.Zero(t, giveUps.Load(), "not a retryable outcome")
				})
			}
		}
	})
}

// serveTCP serves each connection to a loopback listener with handle, and
// closes it all when the test ends.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				handle(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// wrappedBase is a Base that wraps another, as a tracing transport does.
type wrappedBase struct{ base http.RoundTripper }

func (w wrappedBase) RoundTrip(req *http.Request) (*http.Response, error) {
	return w.base.RoundTrip(req)
}

// unwrappingBase is a wrappedBase that declares what it wraps.
type unwrappingBase struct{ base http.RoundTripper }

func (w unwrappingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	return w.base.RoundTrip(req)
}

func (w unwrappingBase) Unwrap() http.RoundTripper { return w.base }

// selfUnwrapping is a wrapper whose Unwrap never ends.
type selfUnwrapping struct{}

func (selfUnwrapping) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("not sent")
}

func (s selfUnwrapping) Unwrap() http.RoundTripper { return s }

// errWrappingBase is a Base that wraps another and the errors it returns.
type errWrappingBase struct{ base http.RoundTripper }

func (w errWrappingBase) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.base.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("traced: %w", err)
	}
	return resp, nil
}

// An error that may be a refused CONNECT's reason phrase is marked so that
// no text table reads it; one that cannot be is left alone.
func TestMarkPeerText(t *testing.T) {
	proxied := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "proxy.test:3128"})}
	direct := &http.Transport{}
	text := errors.New("http: server closed idle connection")
	for _, tt := range []struct {
		name   string
		base   http.RoundTripper
		url    string
		err    error
		marked bool
	}{
		{"https through a proxy", proxied, "https://origin.test/", text, true},
		{"https, a Base that hides whether it has a proxy", wrappedBase{direct}, "https://origin.test/", text, true},
		{"https without a proxy", direct, "https://origin.test/", text, false},
		{"https, a Base that declares it wraps one without a proxy", unwrappingBase{direct}, "https://origin.test/", text, false},
		{"https, wrappers that declare it, around one without a proxy", unwrappingBase{unwrappingBase{direct}}, "https://origin.test/", text, false},
		{"https, a Base that declares it wraps one with a proxy", unwrappingBase{proxied}, "https://origin.test/", text, true},
		{"https, a declared wrapper around one that hides", unwrappingBase{wrappedBase{direct}}, "https://origin.test/", text, true},
		{"https, a wrapper that unwraps to itself", selfUnwrapping{}, "https://origin.test/", text, true},
		{"http: no CONNECT", proxied, "http://origin.test/", text, false},
		{"http, a wrapped Base: no CONNECT", wrappedBase{proxied}, "http://origin.test/", text, false},
		{"an errors.New value wrapped by a Base", wrappedBase{direct}, "https://origin.test/", fmt.Errorf("wrapped: %w", text), true},
		{"an errors.New value inside a proxy's error", proxied, "https://origin.test/", &net.OpError{Op: "proxyconnect", Net: "tcp", Err: text}, true},
		{"not an errors.New value", proxied, "https://origin.test/", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, false},
		{"no errors.New value", proxied, "https://origin.test/", &net.OpError{Op: "proxyconnect", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tt.url, nil)
			err := markPeerText(tt.base, req, tt.err)
			var pt *peerTextError
			assert.Equal(t, tt.marked, errors.As(err, &pt))
			assert.ErrorIs(t, err, tt.err)
			assert.Equal(t, tt.err.Error(), err.Error())
			if tt.marked {
				assert.False(t, isConnectionFailure(err), "a marked error is not classified on its text")
			}
		})
	}
}

// Which errors prove that a request never reached the server.
func TestNeverSent(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tt := range []struct {
		name  string
		err   error
		never bool
	}{
		{"dial refused", refused, true},
		{"dial refused, in a url.Error", &url.Error{Op: "Post", URL: "http://h/", Err: refused}, true},
		{"net/http's dial timeout", &attemptTimeoutError{cause: dialTimeout}, true},
		{"AttemptTimeout's own timer", &attemptTimeoutError{after: time.Second}, false},
		{"a read timeout", &attemptTimeoutError{cause: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}}, false},
		{"a reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, false},
		{"a proxy's dial or CONNECT", &net.OpError{Op: "proxyconnect", Net: "tcp", Err: refused}, false},
		{"EOF", io.EOF, false},
		{"refused stream", errors.New("stream error: stream ID 3; REFUSED_STREAM; received from peer"), true},
		{"refused stream, body not replayable by net/http", errors.New("http2: Transport: cannot retry err [stream error: stream ID 1; REFUSED_STREAM; received from peer] after Request.Body was written; define Request.GetBody to avoid this error"), true},
		{"another reset", errors.New("stream error: stream ID 3; INTERNAL_ERROR; received from peer"), false},
		{"GOAWAY without the stream", errors.New("http2: Transport received Server's graceful shutdown GOAWAY"), true},
		{"GOAWAY without the first stream", errors.New("http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM"), true},
		{"GOAWAY with the stream", errors.New(`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`), false},
		{"a proxy's words", &peerTextError{errors.New("http2: Transport received Server's graceful shutdown GOAWAY")}, false},
		{"quoted", errors.New(`malformed MIME header: missing colon: "http2: Transport received Server's graceful shutdown GOAWAY"`), false},
	} {
		assert.Equal(t, tt.never, neverSent(tt.err, sendHistory{}), tt.name)
	}
}

// An error tells only of the last of net/http's own tries of an attempt: a
// proof that the last one never left holds only when no earlier one can
// have sent the request.
func TestNeverSentAfterNetHTTPResends(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	refusedStream := errors.New("stream error: stream ID 3; REFUSED_STREAM; received from peer")
	goAway := errors.New("http2: Transport received GOAWAY from server ErrCode:PROTOCOL_ERROR")
	graceful := errors.New("http2: Transport received Server's graceful shutdown GOAWAY")
	lastAlone := sendHistory{gotConn: true}
	earlierWrote := sendHistory{gotConn: true, wroteEarlier: true}
	for _, tt := range []struct {
		name  string
		err   error
		h     sendHistory
		never bool
	}{
		{"dial refused, no connection before", refused, sendHistory{}, true},
		{"dial refused after a try got a connection", refused, lastAlone, false},
		{"refused stream, written by the last try alone", refusedStream, lastAlone, true},
		{"refused stream after an earlier try wrote", refusedStream, earlierWrote, false},
		{"GOAWAY without the stream, written by the last try alone", goAway, lastAlone, true},
		{"GOAWAY without the stream after an earlier try wrote", goAway, earlierWrote, false},
		{"graceful GOAWAY after an earlier try wrote", graceful, earlierWrote, false},
	} {
		assert.Equal(t, tt.never, neverSent(tt.err, tt.h), tt.name)
	}
}

// Each try of an attempt begins with GotConn; its WroteHeaders counts for
// it, and for the history once a later try begins.
func TestTryTraceHistory(t *testing.T) {
	gotConn := func(tt *tryTrace) { tt.gotConn(httptrace.GotConnInfo{}) }
	wrote := func(tt *tryTrace) { tt.wroteHeaders() }
	for _, tc := range []struct {
		name   string
		events []func(*tryTrace)
		want   sendHistory
	}{
		{"no try", nil, sendHistory{}},
		{"one try, not written", []func(*tryTrace){gotConn}, sendHistory{gotConn: true}},
		{"one try, written", []func(*tryTrace){gotConn, wrote}, sendHistory{gotConn: true}},
		{"a written try, then another", []func(*tryTrace){gotConn, wrote, gotConn}, sendHistory{gotConn: true, wroteEarlier: true}},
		{"a written try, then another written", []func(*tryTrace){gotConn, wrote, gotConn, wrote}, sendHistory{gotConn: true, wroteEarlier: true}},
		{"a try never written, then one written", []func(*tryTrace){gotConn, gotConn, wrote}, sendHistory{gotConn: true}},
	} {
		tt := new(tryTrace)
		for _, ev := range tc.events {
			ev(tt)
		}
		assert.Equal(t, tc.want, tt.history(), tc.name)
	}
	var untraced *tryTrace
	assert.Equal(t, sendHistory{}, untraced.history(), "an attempt that was not traced")
}

// The mark that keeps a possible proxy's words from the text tables is for
// classifying only: an error not worth retrying is returned as Base
// returned it, so that == holds, as the RoundTrip doc says, even for an
// https request through a Base that hides whether it has a proxy.
func TestPeerTextMarkIsNotReturned(t *testing.T) {
	quota := errors.New("quota exceeded")
	base := baseFunc(func(*http.Request) (*http.Response, error) { return nil, quota })
	for _, url := range []string{"http://origin.test/", "https://origin.test/"} {
		t.Run(url, func(t *testing.T) {
			rt := &Transport{Base: base}

			_, err := rt.RoundTrip(httptest.NewRequest("GET", url, nil).WithContext(context.Background()))

			assert.True(t, err == quota, "returned as it is, got %#v", err)
		})
	}
}

// baseFunc is a Base made of a function.
type baseFunc func(*http.Request) (*http.Response, error)

func (f baseFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
