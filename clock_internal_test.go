package retryhttp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The real clock's wait ends with its context, cancelled or past a deadline
// it does not report, rather than at its end: TestCancellationDuringAWait
// interrupts the Transport's waits on a clock of its own, so that they are
// interrupted while they last whatever the machine's load.
func TestRealClockSleepEndsWithItsContext(t *testing.T) {
	for _, tt := range []struct {
		name string
		want error
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"cancelled", context.Canceled, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(10*time.Millisecond, cancel) // before the wait or during it: either ends it
			return ctx, cancel
		}},
		{"deadline", context.DeadlineExceeded, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Millisecond)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			started := time.Now()
			err := realClock{}.Sleep(ctx, time.Hour)
			assert.ErrorIs(t, err, tt.want)
			assert.Less(t, time.Since(started), time.Minute, "returned long before the wait of an hour ended")
		})
	}
	t.Run("a full wait", func(t *testing.T) {
		assert.NoError(t, realClock{}.Sleep(context.Background(), time.Millisecond))
	})
}
