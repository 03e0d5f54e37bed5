package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/b4dedce7/retryhttp/retrytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// runCmd runs the command in-process and returns its exit code, stdout and
// stderr.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestDemo(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCmd(t)

	assert.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stdout, "hello from the demo server")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	require.Len(t, lines, 6, stderr)
	assert.Contains(t, lines[0], "no URL given: fetching from a flaky demo server at http://127.0.0.1:")
	assert.Regexp(t, `^attempt 1: 503 Service Unavailable; Retry-After "1" read as delay-seconds: 1s; waiting 1\.\d+s; budget 9\.0 tokens left$`, lines[1])
	assert.Regexp(t, `^attempt 2: 503 Service Unavailable; Retry-After "\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT" read as HTTP-date, IMF-fixdate: 1s; waiting 1\.\d+s; budget 8\.0 tokens left$`, lines[2])
	assert.Regexp(t, `^attempt 3: error: .*EOF; no response, so backoff; waiting [\d.]+m?s; budget 7\.0 tokens left$`, lines[3])
	assert.Equal(t, "attempt 4: 200 OK", lines[4])
	assert.Regexp(t, `^200 OK after 4 attempts in [\d.]+m?s$`, lines[5])
}

func TestDemoPostIsNotRetried(t *testing.T) {
	code, stdout, stderr := runCmd(t, "-X", "POST", "-d", `{"amount":1}`)
	assert.Equal(t, exitFailed, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "attempt 1: 503 Service Unavailable\n")
	assert.NotContains(t, stderr, "attempt 2")
	assert.Contains(t, stderr, "503 Service Unavailable after 1 attempt in ")
	assert.Contains(t, stderr, "(not retried: POST is not idempotent and the request has no Idempotency-Key)")
}

func TestFetchesAURL(t *testing.T) {
	srv := retrytest.NewServer(t,
		retrytest.Unavailable(0).WithHeader("Retry-After", "0"),
		retrytest.Reply(503, "").WithHeader("Retry-After", "soon"),
		retrytest.OK("payload"),
	)
	code, stdout, stderr := runCmd(t, "-max-elapsed", "1m", srv.URL+"/x")

	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "payload", stdout)
	assert.Contains(t, stderr, `attempt 1: 503 Service Unavailable; Retry-After "0" read as delay-seconds: 0s; waiting 0s`)
	assert.Contains(t, stderr, `attempt 2: 503 Service Unavailable; Retry-After "soon" not understood, so backoff; waiting `)
	assert.Contains(t, stderr, "attempt 3: 200 OK\n")
	assert.NotContains(t, stderr, "demo server")
	assert.Equal(t, 3, srv.Count())
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		script []retrytest.Answer
		args   []string
		want   int
	}{
		{"200", []retrytest.Answer{retrytest.OK("")}, nil, exitOK},
		{"304 is below 400", []retrytest.Answer{retrytest.Reply(304, "")}, nil, exitOK},
		{"404", []retrytest.Answer{retrytest.Reply(404, "")}, nil, exitFailed},
		{"503 after the attempts", []retrytest.Answer{retrytest.Unavailable(0), retrytest.Unavailable(0)}, []string{"-attempts", "2"}, exitFailed},
		{"502 is not retried by default", []retrytest.Answer{retrytest.Reply(502, "")}, nil, exitFailed},
		{"502 retried with -retry-on", []retrytest.Answer{retrytest.Reply(502, ""), retrytest.OK("")}, []string{"-retry-on", "502,503"}, exitOK},
		{"Retry-After over -max-retry-after", []retrytest.Answer{retrytest.Unavailable(10 * time.Second)}, []string{"-max-retry-after", "5s"}, exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t, tt.script...)
			code, _, stderr := runCmd(t, append(tt.args, srv.URL)...)
			assert.Equal(t, tt.want, code, stderr)
			assert.Equal(t, len(tt.script), srv.Count())
		})
	}
}

func TestFailedRequest(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()

	code, stdout, stderr := runCmd(t, "-attempts", "2", "-max-elapsed", "1m", url)

	assert.Equal(t, exitFailed, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "attempt 1: error: ")
	assert.Contains(t, stderr, "connection refused; no response, so backoff; waiting ")
	assert.Regexp(t, `attempt 2: error: .*gave up after 2 attempts \(attempts used up\).*connection refused`, stderr)
	assert.Contains(t, stderr, "failed after 2 attempts in ")
}

func TestTimeout(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK("late").WithDelay(time.Minute))
	code, _, stderr := runCmd(t, "-timeout", "100ms", srv.URL)
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, stderr, "context deadline exceeded")
}

func TestRequestFlags(t *testing.T) {
	bodyFile := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(bodyFile, []byte(`{"from":"file"}`), 0o600))
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("created"))

	code, stdout, stderr := runCmd(t,
		"-H", "X-One: 1", "-H", "X-One: 2", "-H", "Content-Type: application/json",
		"-d", "@"+bodyFile, "-idempotency-key", "order-7", "-v",
		srv.URL+"/orders")

	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, "created", stdout)
	reqs := srv.Requests()
	require.Len(t, reqs, 2, "a POST with an Idempotency-Key is retried")
	for _, r := range reqs {
		assert.Equal(t, "POST", r.Method)
		assert.Equal(t, []string{"1", "2"}, r.Header.Values("X-One"))
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, "order-7", r.Header.Get("Idempotency-Key"))
		assert.Equal(t, `{"from":"file"}`, string(r.Body))
	}
	assert.Contains(t, stderr, "> POST "+srv.URL+"/orders\n")
	assert.Contains(t, stderr, "< Content-Type: ")
}

func TestMethodAndInlineBody(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.OK(""))
	code, _, stderr := runCmd(t, "-X", "put", "-d", "inline", srv.URL)
	assert.Equal(t, exitOK, code, stderr)
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "PUT", reqs[0].Method)
	assert.Equal(t, "inline", string(reqs[0].Body))
}

func TestQuiet(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("body"))
	code, stdout, stderr := runCmd(t, "-q", srv.URL)
	assert.Equal(t, exitOK, code)
	assert.Equal(t, "body", stdout)
	assert.Empty(t, stderr)
	assert.Equal(t, 2, srv.Count())
}

func TestBadUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-nope"}, "flag provided but not defined: -nope"},
		{"bad duration", []string{"-timeout", "soon"}, `invalid value "soon" for flag -timeout`},
		{"not a URL", []string{"::nope"}, `"::nope" is not an http or https URL`},
		{"other scheme", []string{"ftp://example.com/"}, `"ftp://example.com/" is not an http or https URL`},
		{"no host", []string{"http:///path"}, `"http:///path" is not an http or https URL`},
		{"two URLs", []string{"http://a/", "http://b/"}, "one URL at most, got 2 arguments"},
		{"unreadable body file", []string{"-d", "@" + missing}, "reading the body: open " + missing},
		{"bad header", []string{"-H", "NoColon"}, `header "NoColon" is not of the form 'Name: value'`},
		{"bad status", []string{"-retry-on", "503,abc"}, `-retry-on: "abc" is not an HTTP status code`},
		{"negative attempts", []string{"-attempts", "-1"}, "invalid Policy.MaxAttempts -1"},
		{"negative max elapsed", []string{"-max-elapsed", "-1s"}, "invalid Policy.MaxElapsed -1s"},
		{"bad method", []string{"-X", "BAD METHOD", "http://127.0.0.1:1/"}, `invalid method "BAD METHOD"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.args...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, stdout)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.True(t, strings.HasPrefix(stderr, "retryget: "), stderr)
			assert.Contains(t, stderr, tt.want)
		})
	}
}

func TestHelp(t *testing.T) {
	code, _, stderr := runCmd(t, "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stderr, "usage: retryget [flags] [URL]")
	assert.Regexp(t, regexp.MustCompile(`-retry-on statuses`), stderr)
}
