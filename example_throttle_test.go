package retryhttp_test

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/b4dedce7/retryhttp"
)

// A Transport that rejects locally a share of its requests to a destination
// that lately accepted less than half of its attempts, and tells of the
// requests its quota holds kept back.
func ExampleNewThrottle() {
	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{
		Throttle: retryhttp.NewThrottle(2, 5*time.Second),
		OnHold: func(ev retryhttp.HoldEvent) {
			fmt.Printf("held %v: %v (%s)\n", ev.Held, ev.Reason, ev.Header)
		},
	}}}
	resp, err := client.Get("http://127.0.0.1:1/") // nothing listens: a refused connection
	if errors.Is(err, retryhttp.ErrThrottled) {
		fmt.Println("rejected locally:", err)
		return
	}
	if err == nil {
		resp.Body.Close()
	}
}
