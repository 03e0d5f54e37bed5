// Command retryget fetches a URL through retryhttp's Transport, like a small
// curl that rides out overloaded and restarting servers, and tells on stderr
// what each attempt got and how long it waited.
//
// Usage:
//
//	retryget [flags] [URL]
//
// With no URL it starts a flaky demo server on loopback and fetches from
// it: a 503 with Retry-After in seconds, a 503 with Retry-After as an
// HTTP-date, a dropped connection, then 200. With -X POST and no
// Idempotency-Key, the demo shows that such a request is not retried.
//
// The response body goes to stdout. The exit code is 0 for a final status
// below 400, 1 for a final status of 400 or more or a failed request, and 2
// for bad flags, a bad URL or an unreadable body file.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the request failed or its final status was 400 or more
	exitUsage  = 2 // bad flags, URL or body file
)

// options holds what the command line asked for.
type options struct {
	url            string
	method         string
	header         http.Header
	body           []byte
	hasBody        bool
	idempotencyKey string
	timeout        time.Duration
	quiet, verbose bool
	policy         retryhttp.Policy
	budget         *retryhttp.Budget
}

// headerFlags collects repeated -H flags.
type headerFlags struct{ h http.Header }

func (f *headerFlags) String() string { return "" }

func (f *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("header %q is not of the form 'Name: value'", v)
	}
	f.h.Add(name, strings.TrimSpace(value))
	return nil
}

// parseOptions reads the command line. Its errors are one line long.
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{header: http.Header{}}
	fs := flag.NewFlagSet("retryget", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by the caller
	fs.Usage = func() {}
	attempts := fs.Int("attempts", 0, "attempts per request, the first included (0: the library's default, 4)")
	fs.DurationVar(&o.policy.MaxElapsed, "max-elapsed", 0, "no retry starts later than this after the first attempt (0: default, 30s)")
	fs.DurationVar(&o.policy.MaxRetryAfter, "max-retry-after", 0, "the longest Retry-After waited for (0: default, 30s)")
	retryOn := fs.String("retry-on", "429,503", "comma-separated `statuses` to retry")
	fs.StringVar(&o.method, "X", "", "request `method` (default GET, or POST with -d)")
	headers := &headerFlags{h: o.header}
	fs.Var(headers, "H", "request header `'Name: value'` (repeatable)")
	data := fs.String("d", "", "request body, or @file to read it from a file")
	fs.StringVar(&o.idempotencyKey, "idempotency-key", "", "send this Idempotency-Key, which makes a POST safe to retry")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up on the whole request after this long (0: no limit)")
	fs.BoolVar(&o.quiet, "q", false, "quiet: no attempt lines or summary on stderr")
	fs.BoolVar(&o.verbose, "v", false, "verbose: also print the request and the final response's header on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stderr)
		}
		return nil, err
	}
	if fs.NArg() > 1 {
		return nil, fmt.Errorf("one URL at most, got %d arguments", fs.NArg())
	}
	if fs.NArg() == 1 {
		u, err := url.Parse(fs.Arg(0))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%q is not an http or https URL", fs.Arg(0))
		}
		o.url = u.String()
	}
	if *data != "" || flagSet(fs, "d") {
		o.hasBody = true
		o.body = []byte(*data)
		if name, ok := strings.CutPrefix(*data, "@"); ok {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("reading the body: %w", err)
			}
			o.body = b
		}
	}
	if o.method == "" {
		o.method = http.MethodGet
		if o.hasBody {
			o.method = http.MethodPost
		}
	}
	o.method = strings.ToUpper(o.method)
	statuses, err := parseStatuses(*retryOn)
	if err != nil {
		return nil, err
	}
	o.policy.Retryable = retryhttp.RetryStatuses(statuses...)
	o.policy.MaxAttempts = *attempts
	o.budget = retryhttp.NewBudget(retryhttp.DefaultBudgetRatio, retryhttp.DefaultBudgetBurst)
	o.policy.Budget = o.budget
	if err := o.policy.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func parseStatuses(s string) ([]int, error) {
	var codes []int
	for _, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		code, err := strconv.Atoi(field)
		if err != nil || code < 100 || code > 599 {
			return nil, fmt.Errorf("-retry-on: %q is not an HTTP status code", field)
		}
		codes = append(codes, code)
	}
	return codes, nil
}

func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintln(w, "usage: retryget [flags] [URL]")
	fmt.Fprintln(w, "Fetches URL through retryhttp; with no URL, from a flaky demo server on loopback.")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// run is the whole command, apart from the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "retryget: %v (see retryget -h)\n", err)
		return exitUsage
	}
	if o.url == "" {
		demo := startDemoServer()
		defer demo.Close()
		o.url = demo.URL + "/demo"
		if !o.quiet {
			fmt.Fprintf(stderr, "no URL given: fetching from a flaky demo server at %s\n", o.url)
		}
	}
	return fetch(ctx, o, stdout, stderr)
}

// startDemoServer starts the flaky server a newcomer sees every path with.
func startDemoServer() *retrytest.Server {
	return retrytest.NewServer(nil,
		retrytest.Unavailable(time.Second),
		// Closing the connection here makes the drop that follows happen
		// on a new connection, where net/http does not resend by itself.
		retrytest.UnavailableUntil(time.Second).WithHeader("Connection", "close"),
		retrytest.Drop(),
		retrytest.OK("hello from the demo server: it answered 503 twice and dropped a connection before this\n"),
	).Otherwise(retrytest.OK("hello again from the demo server\n"))
}

func fetch(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	var body io.Reader
	if o.hasBody {
		body = bytes.NewReader(o.body) // replayable: http.NewRequest sets GetBody
	}
	req, err := http.NewRequestWithContext(ctx, o.method, o.url, body)
	if err != nil {
		fmt.Fprintf(stderr, "retryget: %v\n", err)
		return exitUsage
	}
	for k, v := range o.header {
		req.Header[k] = v
	}
	if o.idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", o.idempotencyKey)
	}
	logf := func(format string, a ...any) {
		if !o.quiet {
			fmt.Fprintf(stderr, format, a...)
		}
	}
	if o.verbose {
		logf("> %s %s\n", req.Method, req.URL)
		for k, v := range req.Header {
			logf("> %s: %s\n", k, strings.Join(v, ", "))
		}
	}

	retries := 0
	policy := o.policy
	policy.OnRetry = func(ev retryhttp.RetryEvent) {
		retries++
		logf("attempt %d: %s; %s; waiting %v; budget %.1f tokens left\n",
			ev.Attempt, outcome(ev.Response, ev.Err), describeRetryAfter(ev.Response, ev.RetryAfter, ev.HasRetryAfter),
			ev.Wait.Round(time.Millisecond), o.budget.Tokens())
	}
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: policy}}

	started := time.Now()
	resp, err := client.Do(req)
	attempts := retries + 1
	elapsed := time.Since(started).Round(time.Millisecond)
	if err != nil {
		logf("attempt %d: %s\n", attempts, outcome(nil, err))
		logf("failed after %s in %v\n", plural(attempts, "attempt"), elapsed)
		if o.quiet {
			fmt.Fprintf(stderr, "retryget: %v\n", err)
		}
		return exitFailed
	}
	defer resp.Body.Close()
	logf("attempt %d: %s\n", attempts, outcome(resp, nil))
	if o.verbose {
		for k, v := range resp.Header {
			logf("< %s: %s\n", k, strings.Join(v, ", "))
		}
	}
	_, copyErr := io.Copy(stdout, resp.Body)
	logf("%s after %s in %v%s\n", resp.Status, plural(attempts, "attempt"), elapsed, whyNotRetried(req, resp, attempts, policy))
	if copyErr != nil {
		fmt.Fprintf(stderr, "retryget: reading the response body: %v\n", copyErr)
		return exitFailed
	}
	if resp.StatusCode >= 400 {
		return exitFailed
	}
	return exitOK
}

// whyNotRetried explains a retryable answer that got a single attempt
// because the request was not safe to send again.
func whyNotRetried(req *http.Request, resp *http.Response, attempts int, p retryhttp.Policy) string {
	if attempts > 1 || !p.Retryable(resp, nil) || retryhttp.DefaultIdempotent(req) {
		return ""
	}
	return fmt.Sprintf(" (not retried: %s is not idempotent and the request has no Idempotency-Key)", req.Method)
}

func outcome(resp *http.Response, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return resp.Status
}

// describeRetryAfter says what Retry-After the response had and how it was
// read.
func describeRetryAfter(resp *http.Response, d time.Duration, ok bool) string {
	if resp == nil {
		return "no response, so backoff"
	}
	value := resp.Header.Get("Retry-After")
	switch {
	case value == "":
		return "no Retry-After, so backoff"
	case !ok:
		return fmt.Sprintf("Retry-After %q not understood, so backoff", value)
	}
	form := "HTTP-date, asctime form"
	switch {
	case value[0] >= '0' && value[0] <= '9':
		form = "delay-seconds"
	case strings.Contains(value, "-"):
		form = "HTTP-date, obsolete RFC 850 form"
	case strings.Contains(value, ","):
		form = "HTTP-date, IMF-fixdate"
	}
	return fmt.Sprintf("Retry-After %q read as %s: %v", value, form, d)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
