// Command retryget fetches a URL through retryhttp's Transport, like a small
// curl that rides out overloaded and restarting servers, and tells on stderr
// what each attempt got, how long it waited and, when it gave up, why.
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
// The flags that bound the retries are -attempts (attempts per request, the
// first included), -max-elapsed (no retry starts later than this after the
// first attempt), -max-retry-after (the longest wait accepted from the
// server), -timeout (the whole request, waits included) and -attempt-timeout
// (each attempt must produce its response headers within this time; 0, the
// default, means no limit). Durations need a unit: 5s, 1m30s, 500ms.
// -hedge DELAY sends a hedged copy of a request that may be resent when an
// attempt has had no response headers for DELAY, and takes the first answer;
// -hedge auto uses the adaptive delay, the recent 95th percentile of the
// host's time to headers, which needs 20 answers from the host before it
// hedges, so a single fetch sends no hedge with it. A hedge counts as an
// attempt and spends from the budget.
// -retry-on lists the statuses retried, separated by commas; it accepts only
// statuses a retry could mend: 403 (retried only when the server marks it as
// a rate-limit refusal), 408, 425, 429, and 500 to 599 except 501, 505, 506,
// 508, 510 and 511. A refused or broken connection and an attempt that timed
// out are always retried. The retries of one run share a per-host retry
// budget, printed on every retry line.
//
// When a retry would pass -max-elapsed or the -timeout deadline because of
// the wait the server asked for, the give-up line says that wait too:
//
//	gave up after 1 attempt: next retry would pass the -timeout deadline (1s); the server asked for 4s
//
// Each retry line names the header the server's wait came from: Retry-After,
// in any of its forms, or a rate-limit header (RateLimit, RateLimit-Reset,
// X-RateLimit-Reset-After, X-RateLimit-Reset, X-Rate-Limit-Reset). When the
// retries end on an outcome that called for another attempt, a line says
// why. The demo prints something like:
//
//	no URL given: fetching from a flaky demo server at http://127.0.0.1:40671/demo
//	attempt 1: 503 Service Unavailable; Retry-After "1" read as delay-seconds: 1s; waiting 1.42s; budget 2.0 tokens left
//	attempt 2: 503 Service Unavailable; Retry-After "Thu, 01 Jan 2026 00:00:02 GMT" read as HTTP-date, IMF-fixdate: 1s; waiting 1.716s; budget 1.0 tokens left
//	attempt 3: error: EOF; no response, so backoff; waiting 4.105s; budget 0.0 tokens left
//	attempt 4: 200 OK
//	200 OK after 4 attempts in 7.248s
//
// and, with -X POST:
//
//	attempt 1: 503 Service Unavailable
//	gave up after 1 attempt: POST is not idempotent and has no Idempotency-Key (not retried)
//	503 Service Unavailable after 1 attempt in 2ms
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
	fs.DurationVar(&o.policy.MaxRetryAfter, "max-retry-after", 0, "the longest wait accepted from the server's Retry-After or rate-limit header (0: default, 30s)")
	fs.DurationVar(&o.policy.AttemptTimeout, "attempt-timeout", 0, "each attempt must produce its response headers within this time, or is abandoned and retried (0: no limit)")
	hedge := fs.String("hedge", "", "send a hedged copy when an attempt has had no response headers for this `delay`, or \"auto\" for the adaptive delay (default: no hedging)")
	retryOn := fs.String("retry-on", "403,429,503", "comma-separated `statuses` to retry (a 403 only when the server marks it as a rate-limit refusal); accepted: "+mendableStatuses)
	fs.StringVar(&o.method, "X", "", "request `method` (default GET, or POST with -d)")
	headers := &headerFlags{h: o.header}
	fs.Var(headers, "H", "request header `'Name: value'` (repeatable)")
	data := fs.String("d", "", "request body, or @file to read it from a file")
	fs.StringVar(&o.idempotencyKey, "idempotency-key", "", "send this Idempotency-Key, which makes a POST safe to retry")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up on the whole request, waits included, after this long (0: no limit)")
	fs.BoolVar(&o.quiet, "q", false, "quiet: no attempt lines or summary on stderr")
	fs.BoolVar(&o.verbose, "v", false, "verbose: also print the request and the final response's header on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stderr)
			return nil, err
		}
		return nil, explainDuration(err)
	}
	// Checked here, so that the message names the flag rather than the
	// library's Policy field.
	switch {
	case *attempts < 0:
		return nil, fmt.Errorf("-attempts %d: must not be negative", *attempts)
	case o.policy.MaxElapsed < 0:
		return nil, fmt.Errorf("-max-elapsed %v: must not be negative", o.policy.MaxElapsed)
	case o.policy.MaxRetryAfter < 0:
		return nil, fmt.Errorf("-max-retry-after %v: must not be negative", o.policy.MaxRetryAfter)
	case o.policy.AttemptTimeout < 0:
		return nil, fmt.Errorf("-attempt-timeout %v: must not be negative", o.policy.AttemptTimeout)
	case o.timeout < 0:
		return nil, fmt.Errorf("-timeout %v: must not be negative", o.timeout)
	}
	if flagSet(fs, "hedge") {
		h, err := parseHedge(*hedge)
		if err != nil {
			return nil, err
		}
		o.policy.Hedge = h
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
	o.budget = retryhttp.NewHostBudget(retryhttp.DefaultBudgetRatio, retryhttp.DefaultBudgetBurst)
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

// parseHedge reads -hedge: "auto", or a positive duration.
func parseHedge(s string) (*retryhttp.Hedge, error) {
	if strings.EqualFold(strings.TrimSpace(s), "auto") {
		return &retryhttp.Hedge{}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("-hedge %q: not a duration such as 150ms, nor auto", s)
	}
	if d <= 0 {
		return nil, fmt.Errorf("-hedge %v: must be positive, or auto for the adaptive delay", d)
	}
	return &retryhttp.Hedge{Delay: d}, nil
}

// parseStatuses reads -retry-on: a comma-separated list of statuses that a
// retry could mend (see mendable). An empty value retries no status, only
// failed connections and attempts that timed out.
func parseStatuses(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var codes []int
	for _, field := range strings.Split(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("-retry-on %q: empty item; list statuses separated by single commas, such as 429,503", s)
		}
		code, err := strconv.Atoi(field)
		if err != nil || code < 100 || code > 599 {
			return nil, fmt.Errorf("-retry-on: %q is not an HTTP status code", field)
		}
		if !mendable(code) {
			return nil, fmt.Errorf("-retry-on: %d is not an error status a retry could mend; accepted: %s", code, mendableStatuses)
		}
		codes = append(codes, code)
	}
	return codes, nil
}

// mendable reports whether a response with status code may be answered
// differently if the same request is sent again later: the statuses of a
// server that is overloaded, restarting, limiting the rate or timing out.
// The others are successes, redirects, refusals of the request itself, or
// a server's lasting inability (501 Not Implemented, 505 HTTP Version Not
// Supported, ...), which a retry would only repeat.
func mendable(code int) bool {
	switch code {
	case http.StatusForbidden, // only as a rate-limit refusal: see retryhttp.RetryStatuses
		http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported, http.StatusVariantAlsoNegotiates,
		http.StatusLoopDetected, http.StatusNotExtended, http.StatusNetworkAuthenticationRequired:
		return false
	}
	return code >= 500 && code <= 599
}

// mendableStatuses lists, for messages, the statuses mendable accepts.
const mendableStatuses = "403 (retried only as a rate-limit refusal), 408, 425, 429, and 500-599 except 501, 505, 506, 508, 510 and 511"

// durationFlags are the flags that take a time.Duration.
var durationFlags = []string{"max-elapsed", "max-retry-after", "attempt-timeout", "timeout"}

// explainDuration adds a hint to flag's "parse error" for a duration flag,
// which otherwise does not say what a duration looks like: above all, that
// a bare number needs a unit.
func explainDuration(err error) error {
	msg := err.Error()
	for _, name := range durationFlags {
		quoted, ok := strings.CutPrefix(msg, "invalid value ")
		if !ok {
			return err
		}
		quoted, ok = strings.CutSuffix(quoted, " for flag -"+name+": parse error")
		if !ok {
			continue
		}
		value, uerr := strconv.Unquote(quoted)
		if uerr != nil {
			return err
		}
		if _, ferr := strconv.ParseFloat(strings.TrimSpace(value), 64); ferr == nil {
			v := strings.TrimSpace(value)
			return fmt.Errorf("-%s %s: a duration needs a unit: write %ss (or %sms, %sm, %sh)", name, value, v, v, v, v)
		}
		return fmt.Errorf("invalid value %s for flag -%s: not a duration; write one such as 30s, 1m30s or 500ms", quoted, name)
	}
	return err
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
// Its two waits of a second each get up to a second of jitter apiece, and
// the dropped connection's backoff is the schedule's third step (2 s to 6 s,
// since the schedule advances on every retry): about 7 s in all, 4 s to
// 10 s.
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

// clockKey is the context key under which a test hands fetch a fake
// retryhttp.Clock, so that long waits take no real time.
type clockKey struct{}

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
	var gaveUp *retryhttp.GiveUpEvent
	policy := o.policy
	if c, ok := ctx.Value(clockKey{}).(retryhttp.Clock); ok {
		policy.Clock = c
	}
	policy.OnRetry = func(ev retryhttp.RetryEvent) {
		retries = ev.Attempt
		logf("attempt %d: %s; %s; waiting %v; budget %.1f tokens left\n",
			ev.Attempt, outcome(ev.Response, ev.Err),
			describeServerWait(ev.Response, ev.RetryAfterHeader, ev.RetryAfter, ev.HasRetryAfter),
			ev.Wait.Round(time.Millisecond), o.budget.TokensFor(ev.Request.URL.Scheme+"://"+ev.Request.URL.Host))
	}
	policy.OnHold = func(ev retryhttp.HoldEvent) {
		logf("attempt %d: %s\n", ev.Attempt, describeHold(ev))
	}
	policy.OnGiveUp = func(ev retryhttp.GiveUpEvent) { gaveUp = &ev }
	hedged := 0 // the number of the latest hedge sent
	policy.OnHedge = func(ev retryhttp.HedgeEvent) {
		hedged = ev.Attempt
		how := ""
		if ev.Adaptive {
			how = " (adaptive: the host's recent p95)"
		}
		logf("attempt %d: no response headers after %v%s; hedging with attempt %d; budget %.1f tokens left\n",
			ev.Attempt-1, ev.Delay.Round(time.Microsecond), how, ev.Attempt,
			o.budget.TokensFor(ev.Request.URL.Scheme+"://"+ev.Request.URL.Host))
	}
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: policy}}

	started := time.Now()
	resp, err := client.Do(req)
	elapsed := time.Since(started).Round(time.Millisecond)
	attempts := max(retries+1, hedged)
	why := ""
	if gaveUp != nil {
		attempts = gaveUp.Attempts
		why = fmt.Sprintf("gave up after %s: %s", plural(attempts, "attempt"), o.giveUpReason(req, gaveUp))
	}
	if err != nil {
		// A wait cut short follows an attempt that OnRetry has told of.
		if last := lastAttemptError(err); last != nil && attempts > retries {
			logf("attempt %d: %s\n", attempts, outcome(nil, last))
		}
		if why != "" {
			logf("%s\n", why)
		}
		logf("failed after %s in %v%s\n", plural(attempts, "attempt"), elapsed, o.failure(ctx, err, gaveUp))
		if o.quiet {
			if why != "" {
				if last := lastAttemptError(err); last != nil {
					why += "; last error: " + last.Error()
				}
				fmt.Fprintf(stderr, "retryget: %s\n", why)
			} else {
				fmt.Fprintf(stderr, "retryget: %v\n", err)
			}
		}
		return exitFailed
	}
	defer resp.Body.Close()
	answered, hedge := attempts, ""
	if resp.Request != nil && policy.Hedge != nil {
		answered = retryhttp.Attempt(resp.Request.Context())
		if retryhttp.Hedged(resp.Request.Context()) {
			hedge = " (the hedge answered first)"
		} else if hedged >= answered {
			hedge = " (answered before its hedge)"
		}
	}
	logf("attempt %d: %s%s\n", answered, outcome(resp, nil), hedge)
	if why != "" {
		logf("%s\n", why)
	}
	if o.verbose {
		for k, v := range resp.Header {
			logf("< %s: %s\n", k, strings.Join(v, ", "))
		}
	}
	_, copyErr := io.Copy(stdout, resp.Body)
	logf("%s after %s in %v\n", resp.Status, plural(attempts, "attempt"), elapsed)
	if copyErr != nil {
		fmt.Fprintf(stderr, "retryget: reading the response body: %v\n", copyErr)
		return exitFailed
	}
	if resp.StatusCode >= 400 {
		return exitFailed
	}
	return exitOK
}

// giveUpReason says, in the command's own terms, why the retries of req
// ended on an outcome that called for another attempt.
func (o *options) giveUpReason(req *http.Request, ev *retryhttp.GiveUpEvent) string {
	p := &o.policy
	reason := ""
	switch r := ev.Reason; {
	case errors.Is(r, retryhttp.ErrAttemptsUsedUp):
		reason = fmt.Sprintf("attempts used up (-attempts %d)", orDefault(p.MaxAttempts, retryhttp.DefaultMaxAttempts))
	case errors.Is(r, retryhttp.ErrBudgetEmpty):
		reason = "the retry budget is empty"
	case errors.Is(r, retryhttp.ErrRetryAfterTooLong):
		header := ev.RetryAfterHeader
		if header == "" {
			header = "the server's wait"
		}
		reason = fmt.Sprintf("%s %s exceeds -max-retry-after %v",
			header, seconds(ev.RetryAfter), orDefault(p.MaxRetryAfter, retryhttp.DefaultMaxRetryAfter))
	case errors.Is(r, retryhttp.ErrBodyNotReplayable):
		// The command's bodies can always be replayed; should one ever
		// not be, this is why.
		reason = "the request body cannot be sent again (not retried)"
	case errors.Is(r, retryhttp.ErrNotIdempotent):
		reason = fmt.Sprintf("%s is not idempotent and has no Idempotency-Key (not retried)", req.Method)
	case errors.Is(r, retryhttp.ErrNotResendable):
		reason = "the request may not be sent again (not retried)"
	case errors.Is(r, retryhttp.ErrMaxElapsed):
		reason = fmt.Sprintf("next retry would pass -max-elapsed %v", orDefault(p.MaxElapsed, retryhttp.DefaultMaxElapsed)) + serverAsked(ev)
	case errors.Is(r, retryhttp.ErrDeadline):
		reason = "next retry would pass " + o.deadline() + serverAsked(ev)
	case errors.Is(r, context.DeadlineExceeded):
		reason = o.deadline() + " passed while waiting to retry"
	case errors.Is(r, context.Canceled):
		reason = "the request was cancelled while waiting to retry"
	case errors.Is(r, retryhttp.ErrBackoffStop):
		reason = "the backoff schedule said stop"
	case errors.Is(r, retryhttp.ErrThrottled):
		// The rejection names the accept ratio that led to it.
		reason = strings.TrimPrefix(fmt.Sprint(orDefault[error](ev.Err, r)), "retryhttp: ") + " (nothing sent)"
	default:
		reason = strings.TrimPrefix(fmt.Sprint(r), "retryhttp: ")
	}
	if errors.Is(ev.Err, retryhttp.ErrAttemptTimeout) {
		timedOut := "attempt timed out"
		if p.AttemptTimeout > 0 {
			timedOut += fmt.Sprintf(" (-attempt-timeout %v)", p.AttemptTimeout)
		}
		reason = timedOut + "; " + reason
	}
	return reason
}

// serverAsked tells the wait the last response asked for, which is what
// pushed the next retry past a limit, or nothing when it asked for none.
func serverAsked(ev *retryhttp.GiveUpEvent) string {
	if !ev.HasRetryAfter {
		return ""
	}
	return "; the server asked for " + seconds(ev.RetryAfter)
}

// describeHold says why an attempt was held back before it was sent, and
// for how long, as the retry lines say why and how long they wait.
func describeHold(ev retryhttp.HoldEvent) string {
	why := "held " + ev.Held.Round(time.Millisecond).String()
	switch ev.Reason {
	case retryhttp.HoldReset:
		why += fmt.Sprintf(" for the quota's reset (%s said it was spent)", ev.Header)
	case retryhttp.HoldQuota:
		why += fmt.Sprintf(" for the server's next answer: the quota announced since the reset (%s) was let through", ev.Header)
	}
	switch {
	case ev.Err == nil:
		return why + "; sending"
	case errors.Is(ev.Err, context.Canceled), errors.Is(ev.Err, context.DeadlineExceeded):
		return why + "; cancelled: " + ev.Err.Error()
	}
	return why + "; not waiting longer: " + strings.TrimPrefix(ev.Err.Error(), "retryhttp: ")
}

// deadline names the deadline of the request.
func (o *options) deadline() string {
	if o.timeout > 0 {
		return fmt.Sprintf("the -timeout deadline (%v)", o.timeout)
	}
	return "the deadline" // the caller's context's, not the command line's
}

// failure explains a failed request that did not give up on a retryable
// outcome: today, only one that the -timeout deadline cut short.
func (o *options) failure(ctx context.Context, err error, gaveUp *retryhttp.GiveUpEvent) string {
	if gaveUp == nil && o.timeout > 0 && errors.Is(err, context.DeadlineExceeded) &&
		errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ": " + o.deadline() + " passed"
	}
	return ""
}

// lastAttemptError returns the last attempt's own transport error, without
// what http.Client and retryhttp wrap around it: the method and URL, and
// the number of attempts, which the summary says anyway. It is nil when the
// last attempt ended in a response and a wait after it was cut short.
func lastAttemptError(err error) error {
	var giveUp *retryhttp.GiveUpError
	if errors.As(err, &giveUp) {
		return giveUp.Err
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	// An error that ended the request after retries, though not worth
	// retrying itself: "retryhttp: failed after N attempts: %w".
	if strings.HasPrefix(err.Error(), "retryhttp: failed after ") {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
	}
	return err
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// seconds writes d in seconds, as Retry-After counts: 3600s, 1.5s.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

func outcome(resp *http.Response, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return resp.Status
}

// rateLimitHeaders are the rate-limit header fields retryhttp reads when a
// response has no usable Retry-After, in its order of precedence.
var rateLimitHeaders = []string{"RateLimit", "RateLimit-Reset", "X-RateLimit-Reset-After", "X-RateLimit-Reset", "X-Rate-Limit-Reset"}

// describeServerWait says what wait the response asked for, in which header,
// and how it was read. header, d and ok are RetryEvent's RetryAfterHeader,
// RetryAfter and HasRetryAfter.
func describeServerWait(resp *http.Response, header string, d time.Duration, ok bool) string {
	if resp == nil {
		return "no response, so backoff"
	}
	retryAfter := headerValue(resp.Header, "Retry-After")
	if ok && header == "Retry-After" {
		return describeRetryAfter(retryAfter, d)
	}
	var unread []string
	if retryAfter != "" {
		unread = append(unread, fmt.Sprintf("Retry-After %q not understood", retryAfter))
	}
	if ok {
		value := headerValue(resp.Header, header)
		read := fmt.Sprintf("%s %q %s: %v", header, value, howRateLimitRead(header, value), d)
		return strings.Join(append(unread, read), "; ")
	}
	for _, name := range rateLimitHeaders {
		if value := headerValue(resp.Header, name); value != "" {
			unread = append(unread, fmt.Sprintf("%s %q gives no wait", name, value))
			break // retryhttp reads the first one present only
		}
	}
	if len(unread) == 0 {
		return "no Retry-After, so backoff"
	}
	return strings.Join(unread, "; ") + ", so backoff"
}

// headerValue returns every value of the field name, joined.
func headerValue(h http.Header, name string) string {
	return strings.Join(h.Values(name), ", ")
}

// describeRetryAfter says how a Retry-After value was read.
func describeRetryAfter(value string, d time.Duration) string {
	form := "HTTP-date, asctime form"
	switch {
	case value != "" && value[0] >= '0' && value[0] <= '9':
		form = "delay-seconds"
	case strings.Contains(value, "-"):
		form = "HTTP-date, obsolete RFC 850 form"
	case strings.Contains(value, ","):
		form = "HTTP-date, IMF-fixdate"
	}
	return fmt.Sprintf("Retry-After %q read as %s: %v", value, form, d)
}

// howRateLimitRead says how retryhttp reads a rate-limit header's value.
func howRateLimitRead(header, value string) string {
	switch header {
	case "RateLimit-Reset":
		return "read as delay-seconds"
	case "X-RateLimit-Reset-After":
		return "read as seconds from now"
	case "X-RateLimit-Reset", "X-Rate-Limit-Reset":
		// A Unix time from 1,000,000,000 on, seconds from now below it.
		whole, _, _ := strings.Cut(strings.TrimSpace(value), ".")
		if len(strings.TrimLeft(whole, "0")) >= 10 {
			return "read as a Unix time"
		}
		return "read as seconds from now"
	}
	return "read" // RateLimit: the longest "t" of an exhausted policy
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
