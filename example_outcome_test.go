package retryhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/cenkalti/backoff/v4"
)

// Read why the retries ended where the response is handled: a give-up on a
// response (here attempts used up on a 503) returns the response with a nil
// error, and Outcome tells the attempts made and the reason.
func ExampleOutcome() {
	srv := flakyServer(1 << 30) // never recovers
	defer srv.Close()

	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{
		MaxAttempts: 2,
		Backoff:     func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) },
	}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	attempts, reason := retryhttp.Outcome(resp)
	fmt.Println(resp.Status, "after", attempts, "attempts")
	if errors.Is(reason, retryhttp.ErrAttemptsUsedUp) {
		fmt.Println("gave up:", reason)
	}
	// Output:
	// 503 Service Unavailable after 2 attempts
	// gave up: retryhttp: attempts used up
}

// requestIDKey is the context key of a caller's own request id.
type requestIDKey struct{}

// Match a GiveUpEvent to the caller's request through a value in its
// context. With http.Client.Timeout set, net/http hands the Transport a copy
// of the request, so ev.Request is not the caller's pointer; the copy keeps
// the caller's context.
func ExampleGiveUpEvent() {
	srv := flakyServer(1 << 30)
	defer srv.Close()

	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &retryhttp.Transport{Policy: retryhttp.Policy{
			MaxAttempts: 2,
			Backoff:     func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) },
			OnGiveUp: func(ev retryhttp.GiveUpEvent) {
				id, _ := ev.Request.Context().Value(requestIDKey{}).(string)
				fmt.Printf("request %s: gave up after %d attempts: %v\n", id, ev.Attempts, ev.Reason)
			},
		}},
	}
	ctx := context.WithValue(context.Background(), requestIDKey{}, "order-4711")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	// Output: request order-4711: gave up after 2 attempts: retryhttp: attempts used up
}

// Make a file upload replayable: http.NewRequest sets GetBody only for a
// *bytes.Buffer, *bytes.Reader or *strings.Reader body, so a PUT of an
// *os.File may not be sent again (ErrBodyNotReplayable). A GetBody that
// reopens the file lets each retry send it afresh.
func Example_replayableBody() {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if hits++; hits == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "stored %q", body)
	}))
	defer srv.Close()
	name := filepath.Join(os.TempDir(), "retryhttp-example-report.csv")
	if err := os.WriteFile(name, []byte("id,total\n1,100\n"), 0o600); err != nil {
		fmt.Println(err)
		return
	}
	defer os.Remove(name)

	f, err := os.Open(name)
	if err != nil {
		fmt.Println(err)
		return
	}
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/reports/1", f)
	req.GetBody = func() (io.ReadCloser, error) { return os.Open(name) }
	if info, err := f.Stat(); err == nil {
		req.ContentLength = info.Size() // else the body is sent chunked
	}

	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{
		Backoff: func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) },
	}}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	attempts, _ := retryhttp.Outcome(resp)
	fmt.Printf("%s after %d attempts: %s\n", resp.Status, attempts, body)
	// Output: 200 OK after 2 attempts: stored "id,total\n1,100\n"
}
