package retryhttp_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// crowdClock is a fake clock for a crowd of requests sent at once, such as
// 30 clients waiting out the same quota reset: unlike retrytest.Clock, on
// which each wait moves the clock forward at once, so that 25 concurrent
// waits of 3 s take it 75 s ahead, a wait on a crowdClock blocks until the
// clock reaches its end. The clock moves only when every request of the
// crowd that has not ended is waiting on it, and then to the earliest end
// of a wait, as a discrete-event simulation does: nothing is in flight or
// being worked on when it moves, and the waits end in the order of their
// ends, each at its own time, whatever the machine's load.
//
// The crowd is told of its size up front (join), and each request leaves
// it once its answer has been read and closed (see crowdClient), so that a
// request not yet started keeps the clock still. A server may wait on the
// clock too, to answer late: its wait stands for the request in flight.
// A request that a hold keeps waiting for such an answer keeps the clock
// still as well, unless the test counts it as blocked (watchBlocked).
type crowdClock struct {
	mu      sync.Mutex
	now     time.Time
	members int // requests of the crowd that have not ended
	sleeps  []*crowdSleep
	ended   bool
}

type crowdSleep struct {
	until time.Time
	wake  chan struct{}
}

func newCrowdClock(t testing.TB) *crowdClock {
	c := &crowdClock{now: time.Now().Truncate(time.Second)}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.ended = true
		c.release()
	})
	return c
}

// watchBlocked counts, besides the waits on the clock, the requests that
// blocked reports as blocked otherwise, such as those a quota hold keeps
// waiting for an answer in flight (retryhttp.AwaitingAnswers): the clock
// then moves when every member is either waiting on it or so blocked, and
// those answers are ones the server plays late on the clock. blocked is
// asked every millisecond until the test ends, outside the clock's lock (it
// may take locks that are held while the clock is read). A count read as a
// request wakes may move the clock a moment early for it; that is a
// schedule a busy machine could play as well, and the library must hold
// under every schedule.
func (c *crowdClock) watchBlocked(t testing.TB, blocked func() int) {
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			n := blocked()
			c.mu.Lock()
			c.stepWith(n)
			c.mu.Unlock()
		}
	}()
}

func (c *crowdClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Virtual makes the Transport play each wait in full.
func (c *crowdClock) Virtual() bool { return true }

var _ retryhttp.VirtualClock = (*crowdClock)(nil)

// Sleep waits until the clock has moved d ahead, or ctx is done.
func (c *crowdClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return errors.New("crowdClock: waited on after its test ended")
	}
	s := &crowdSleep{until: c.now.Add(d), wake: make(chan struct{})}
	c.sleeps = append(c.sleeps, s)
	c.step()
	c.mu.Unlock()
	select {
	case <-s.wake:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, o := range c.sleeps {
			if o == s {
				c.sleeps = append(c.sleeps[:i], c.sleeps[i+1:]...)
				c.step() // the crowd may be all asleep now
				return ctx.Err()
			}
		}
		return nil // woken meanwhile: the wait was played in full
	}
}

// join adds n requests to the crowd.
func (c *crowdClock) join(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members += n
}

// leave takes one request out of the crowd.
func (c *crowdClock) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members--
	c.step()
}

// step moves the clock to the earliest end of a wait, and ends the waits
// that end then, if every member of the crowd is waiting; c.mu is held.
func (c *crowdClock) step() { c.stepWith(0) }

// stepWith is step with blocked members of the crowd blocked otherwise
// than on the clock; c.mu is held.
func (c *crowdClock) stepWith(blocked int) {
	if len(c.sleeps) == 0 || len(c.sleeps)+blocked < c.members {
		return
	}
	next := c.sleeps[0].until
	for _, s := range c.sleeps[1:] {
		if s.until.Before(next) {
			next = s.until
		}
	}
	if next.After(c.now) {
		c.now = next
	}
	kept := c.sleeps[:0]
	for _, s := range c.sleeps {
		if s.until.After(c.now) {
			kept = append(kept, s)
		} else {
			close(s.wake)
		}
	}
	clear(c.sleeps[len(kept):])
	c.sleeps = kept
}

// release ends every wait, for a test that has ended; c.mu is held.
func (c *crowdClock) release() {
	for _, s := range c.sleeps {
		close(s.wake)
	}
	c.sleeps = nil
}

// crowdClient returns a client that sends through a Transport on clock over
// a fresh base transport, with Policy p (whose Clock it sets), and takes
// each request out of the crowd once its answer's body is closed, or it has
// failed. The caller joins the crowd with the number of requests it sends.
func crowdClient(t testing.TB, clock *crowdClock, p retryhttp.Policy) *http.Client {
	p.Clock = clock
	return &http.Client{Transport: crowdTransport{
		rt:    &retryhttp.Transport{Base: newBase(t), Policy: p},
		clock: clock,
	}}
}

type crowdTransport struct {
	rt    http.RoundTripper
	clock *crowdClock
}

func (t crowdTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		t.clock.leave()
		return nil, err
	}
	resp.Body = &leavingBody{ReadCloser: resp.Body, leave: t.clock.leave}
	return resp, nil
}

// leavingBody takes its request out of the crowd when it is first closed.
type leavingBody struct {
	io.ReadCloser
	once  sync.Once
	leave func()
}

func (b *leavingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.leave)
	return err
}

// hookedClock is a fake clock that calls before at the start of each wait,
// so that a test can make something happen while the Transport waits.
type hookedClock struct {
	*retrytest.Clock
	before func()
}

func (c hookedClock) Sleep(ctx context.Context, d time.Duration) error {
	c.before()
	return c.Clock.Sleep(ctx, d)
}
