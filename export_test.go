package retryhttp

// AwaitingAnswers reports how many attempts the quota holds of t keep
// waiting for an answer in flight, rather than on the Clock. A test that
// plays a crowd of requests on a discrete-event clock moves the clock only
// when every request is blocked: waiting on the clock, or for such an
// answer (see crowdClock in fakeclocks_test.go).
func AwaitingAnswers(t *Transport) int {
	n := 0
	for h := range t.holds.table.all() {
		h.mu.Lock()
		n += h.answering
		h.mu.Unlock()
	}
	return n
}
