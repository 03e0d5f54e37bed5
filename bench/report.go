package main

import (
	"fmt"
	"strings"
	"time"
)

// report is everything one run measured.
type report struct {
	cfg        config
	machine    string
	date       string
	took       time.Duration
	happy      []happyResult
	outage     []outageResult
	brief      []briefResult
	herd       []herdResult
	overload   []overloadResult
	forms      []formResult
	meta       []metaResult
	metaMore   [][]metaResult // the bare transport and retryhttp at the other process counts
	metaNative bool           // the core enforced Policy.AttemptTimeout
	metaRA     []metaRARun    // per Retry-After value of -meta-retry-after, 0 (none) included
	metaYoung  []metaResult   // the young fleet: the bare transport and retryhttp
	sim        *simReport
	tail       []hedgeResult // hedging: a heavy tail
	slow       []hedgeResult // hedging: everything slow
	metaHedge  []metaResult  // the metastable scenario with hedging on
}

// The design targets for retryhttp that the run checks.
const (
	targetTimeRatio     = 1.03
	targetExtraAllocs   = 2
	targetAmplification = 1.15
	targetHerdShare     = 0.25 // of the peak of a client without jitter
)

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	mode := "full run"
	if r.cfg.quick {
		mode = "quick run (-quick)"
	}
	p("# retryhttp and its peers, measured side by side\n\n")
	p("%s on %s, %s, in %v. Contenders, each with its own defaults over the same `http.Transport` settings: %s. Servers on loopback.\n\n",
		mode, r.date, r.machine, r.took.Round(time.Second), versions())

	if len(r.happy) > 0 {
		p("## 1. Happy path (first attempt succeeds)\n\n")
		p("ns/op, B/op and allocs/op: best of %d interleaved rounds of `testing.Benchmark` (%s each). ×bare: the median time ratio to the bare transport over %d blocks of %d ms runs in the order bare, contender, contender, bare, which cancels the machine's drift and any gain from running first. Peak heap: the most in use above the start while %d PUTs of %d KiB run at once.\n\n",
			r.cfg.benchRounds, r.cfg.benchTime, r.cfg.pairs, r.cfg.pairRun.Milliseconds(), r.cfg.concurrentPuts, r.happy[0].putSize>>10)
		p("| contender | GET ns/op | ×bare | B/op | allocs/op | 1 MiB PUT ns/op | ×bare | B/op | allocs/op | peak heap, %d PUTs | own cost ns | own allocs |\n", r.cfg.concurrentPuts)
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, h := range r.happy {
			p("| %s | %.0f | %.3f | %d | %d | %.0f | %.3f | %d | %d | %s | %.0f | %d |\n", h.lib, h.getNs, h.getRatio, h.getBytes, h.getAllocs,
				h.putNs, h.putRatio, h.putBytes, h.putAllocs, mib(h.peakConcurrentPutBytes), h.ownNs, h.ownAllocs)
		}
		p("\nOwn cost: the wrapper's time and allocations per request over a transport that answers at once without a network, less the same for no wrapper: what the wrapper adds, free of loopback's run-to-run spread of a few percent.\n")
	}
	if len(r.outage) > 0 {

		p("\n## 2. Total outage\n\n%d concurrent GETs through one client per contender; the server answers only 503 (no Retry-After).\n\n", r.cfg.outageClients)
		p("| contender | attempts seen | per request (amplification) | answer time p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n")
		for _, o := range r.outage {
			p("| %s | %d | %.2f | %v | %v | %v |\n", o.lib, o.attempts, o.amplification, round(o.p50), round(o.p99), round(o.maxT))
		}

	}
	if len(r.brief) > 0 {
		p("\n## 3. Brief outage\n\n%d GETs offered evenly over %v through one client per contender; the server answers 503 for the first %v, then 200.\n\n",
			r.cfg.briefRequests, 2*r.cfg.outage, r.cfg.outage)
		p("| contender | Retry-After | succeeded | attempts seen | time to success p50 | p90 | max |\n|---|---|---:|---:|---:|---:|---:|\n")
		for _, o := range r.brief {
			ra := "none"
			if o.retryAfter {
				ra = "1"
			}
			p("| %s | %s | %d of %d (%.0f%%) | %d | %v | %v | %v |\n", o.lib, ra, o.succeeded, o.requests,
				100*float64(o.succeeded)/float64(o.requests), o.attempts, round(o.p50OK), round(o.p90OK), round(o.maxOK))
		}

	}
	if len(r.herd) > 0 {
		p("\n## 4. Herd\n\n%d clients, each with its own transport, are told `Retry-After: 2` at the same moment. Offsets are each retry's arrival against the moment its client was told to come back; negative is early.\n\n", r.cfg.herdClients)
		p("| contender | retries | early | earliest offset | peak retries per 100 ms |\n|---|---:|---:|---:|---:|\n")
		for _, h := range r.herd {
			p("| %s | %d | %d | %v | %d |\n", h.lib, h.retries, h.early, round(h.earliest), h.peakPer100ms)
		}
		p("\n![retry arrivals in the herd](herd.svg)\n")

	}
	if len(r.overload) > 0 {
		p("\n## 5. Overload\n\nA server that serves %d requests at once, %v each (capacity %.0f/s), and answers 503 with `Retry-After: 1` beyond that; %.0f requests/s offered for %v through one client per contender. Goodput and load are what the server saw from %v after the start to the end of the offered load.\n\n",
			overloadSlots, overloadWork, overloadSlots/overloadWork.Seconds(), r.cfg.overloadRPS, r.cfg.overloadFor, overloadWarmup)
		p("| contender | offered | succeeded | attempts seen, all | goodput /s | load on the server /s | until all answered |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, o := range r.overload {
			p("| %s | %d | %d (%.0f%%) | %d | %.0f | %.0f | %v |\n", o.lib, o.offered, o.succeeded, 100*float64(o.succeeded)/float64(o.offered),
				o.attempts, o.goodput, o.load, round(o.lastAnswer))
		}
		p("\n![amplification and goodput](load.svg)\n")

	}
	if len(r.forms) > 0 {
		p("\n## 6. Retry-After forms\n\nThe server names a moment 3 s ahead, in each form (for dates, the Date header is in the same form, and both are whole seconds, so the moment is between 2 and 3 s after the answer). Offset: the retry's arrival against the moment named; negative is early. As told: no earlier than the moment named, and no later than a fifth of the wait or 1 s, whichever is more (the most jitter retryhttp adds), and 100 ms of slack after it, plus 1 s for dates, since a client that counts from the Date header, to be immune to clock skew, cannot see the fraction of a second the header leaves out.\n\n")
		p("| contender | form | told | waited | offset | as told |\n|---|---|---:|---:|---:|---|\n")
		for _, f := range r.forms {
			waited, offset := "no retry", ""
			if f.waited >= 0 {
				waited, offset = round(f.waited).String(), round(f.offset).String()
			}
			p("| %s | %s | %v | %s | %s | %s |\n", f.lib, f.form, round(f.told), waited, offset, yesNo(f.asTold))
		}

	}
	if len(r.meta) > 0 {
		r.metaMarkdown(p)
	}
	if len(r.metaRA) > 0 || len(r.metaYoung) > 0 {
		r.metaRAMarkdown(p)
	}
	if r.sim != nil {
		r.simMarkdown(p)
		r.designsMarkdown(p)
	}

	p("\n## Targets for retryhttp\n\n")
	for _, line := range r.targets() {
		p("- %s\n", line)
	}
	r.hedgeMarkdown(p)
	return b.String()
}

// targets checks retryhttp's design targets against the run.
func (r *report) targets() []string {
	var lines []string
	check := checker(&lines)
	if len(r.happy) > 1 {
		bare, ours := r.happy[0], r.happy[1]
		check(1+ours.ownNs/bare.getNs <= targetTimeRatio, "time: own cost %.0f ns per request, ×%.4f of a bare loopback GET (target ≤ ×%.2f). "+
			"On loopback the GET measured ×%.3f (middle half of the blocks ×%.3f to ×%.3f) and the 1 MiB PUT ×%.3f (×%.3f to ×%.3f): "+
			"loopback's spread from run to run is wider than the target, so the verdict rests on the own cost",
			ours.ownNs, 1+ours.ownNs/bare.getNs, targetTimeRatio, ours.getRatio, ours.getIQR[0], ours.getIQR[1], ours.putRatio, ours.putIQR[0], ours.putIQR[1])
		check(ours.getAllocs-bare.getAllocs <= targetExtraAllocs, "GET allocations %+d over the bare transport (target ≤ +%d)", ours.getAllocs-bare.getAllocs, targetExtraAllocs)
		check(ours.putAllocs-bare.putAllocs <= targetExtraAllocs && ours.putBytes-bare.putBytes < 1<<10,
			"1 MiB PUT allocations %+d and bytes %+d over the bare transport: the body is not buffered", ours.putAllocs-bare.putAllocs, ours.putBytes-bare.putBytes)
	}
	for _, o := range r.outage {
		if o.lib == "retryhttp" {
			check(o.amplification <= targetAmplification, "amplification under a total outage %.2f (target ≤ %.2f)", o.amplification, targetAmplification)
		}
	}
	var ourPeak, noJitterPeak, ourEarly int
	for _, h := range r.herd {
		switch h.lib {
		case "retryhttp":
			ourPeak, ourEarly = h.peakPer100ms, h.early
		case "go-retryablehttp": // applies no jitter to Retry-After
			noJitterPeak = h.peakPer100ms
		}
	}
	if len(r.herd) > 0 {
		check(float64(ourPeak) <= targetHerdShare*float64(noJitterPeak),
			"herd peak %d per 100 ms against %d for go-retryablehttp, which adds no jitter to Retry-After (target ≤ a quarter)", ourPeak, noJitterPeak)
		if float64(ourPeak) > targetHerdShare*float64(noJitterPeak) {
			lines = append(lines, "  Why: the jitter on a Retry-After is a random extra of up to a fifth of the wait, so for `Retry-After: 2` "+
				"the retries spread over 400 ms, four 100 ms windows. The fullest of four windows holds at least a quarter of the "+
				"retries, and random arrivals put more than that in one; the quarter is only reachable with a wider jitter than the design allows.")
		}
		check(ourEarly == 0, "%d early retries in the herd (target 0)", ourEarly)
	}
	asTold, forms := 0, 0
	for _, f := range r.forms {
		if f.lib == "retryhttp" {
			forms++
			if f.asTold {
				asTold++
			}
		}
	}
	if forms > 0 {
		check(asTold == forms, "waited as told for %d of %d Retry-After forms", asTold, forms)
	}
	for _, run := range append([][]metaResult{r.meta}, r.metaMore...) {
		if len(run) < 2 {
			continue
		}
		bare, ours := run[0], run[1]
		n := ours.params.clients
		check(ours.recovered && bare.recovered && ours.recovery <= bare.recovery+targetRecoveryLag,
			"metastable failure, %d processes: recovered %s after the trigger, the bare transport %s (target: no more than %v after it)",
			n, recoveryText(ours.recovered, ours.recovery), recoveryText(bare.recovered, bare.recovery), targetRecoveryLag)
		check(ours.maxLoadRatio <= targetLoadRatio, "metastable failure, %d processes: load at most ×%.2f the bare transport's in any 1 s window from the trigger on (target ≤ ×%.1f)", n, ours.maxLoadRatio, targetLoadRatio)
		check(ours.retriesFromTrigger > 0, "metastable failure, %d processes: %d retries made from the trigger on (attempt timeouts are retried, not dropped)", n, ours.retriesFromTrigger)
	}
	r.metaRATargets(check)
	return lines
}

// checker returns a function that adds a target's verdict to lines.
func checker(lines *[]string) func(ok bool, format string, a ...any) {
	return func(ok bool, format string, a ...any) {
		mark := "met"
		if !ok {
			mark = "MISSED"
		}
		*lines = append(*lines, fmt.Sprintf("**%s**: %s", mark, fmt.Sprintf(format, a...)))
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func round(d time.Duration) time.Duration {
	if d < 0 {
		return -round(-d)
	}
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}
