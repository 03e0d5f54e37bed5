package main

import (
	"net/http"
	"time"

	"resty.dev/v3"
)

// restyRetries is the retry count the bench gives resty: its retries are
// off until SetRetryCount, and 3 makes 4 attempts, like the other peers'
// handful.
const restyRetries = 3

// newResty returns a resty client over base configured as its
// documentation recommends for retries: SetRetryCount, and the 429 and 5xx
// retry conditions (without them it retries network errors only). Its
// default backoff (100 ms to 2 s, jittered) and its Retry-After handling
// are left as they are.
func newResty(base http.RoundTripper) *resty.Client {
	c := resty.New().SetTransport(base).SetRetryCount(restyRetries).
		AddRetryConditions(resty.RetryConditionStatusTooManyRequests, resty.RetryConditionStatus5XX)
	c.SetLogger(quietLogger{}) // its warnings would interleave with the report
	return c
}

// restyTransport makes a resty client an http.RoundTripper, so that it runs
// the same scenarios as the other contenders: each RoundTrip is one
// resty request, with the caller's method, URL, headers, body and context,
// whose response body is handed back unread.
type restyTransport struct{ c *resty.Client }

func (t restyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := t.c.R().SetContext(req.Context()).SetResponseDoNotParse(true).SetHeaderMultiValues(req.Header)
	if req.Body != nil && req.Body != http.NoBody {
		r.SetBody(req.Body)
	}
	resp, err := r.Execute(req.Method, req.URL.String())
	if err != nil {
		if resp != nil && resp.RawResponse != nil {
			resp.RawResponse.Body.Close()
		}
		return nil, err
	}
	raw := resp.RawResponse
	raw.Body = resp.Body // resty's wrapper, which releases its per-attempt context on Close
	return raw, nil
}

// restyWithTimeout is newResty with a limit on each attempt (resty's
// SetTimeout applies per attempt, and a timed-out attempt is retried).
func restyWithTimeout(base http.RoundTripper, limit time.Duration) http.RoundTripper {
	return restyTransport{newResty(base).SetTimeout(limit)}
}

type quietLogger struct{}

func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Debugf(string, ...any) {}
