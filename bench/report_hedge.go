package main

import (
	"fmt"
	"time"
)

// The design targets of the hedging scenarios for retryhttp.
const (
	targetTailP99       = 50 * time.Millisecond
	targetTailExtra     = 0.05 // extra load in the heavy tail
	targetSlowExtraOver = 0.10 // extra load over no hedging when everything is slow
)

func pct(f float64) string { return fmt.Sprintf("%+.1f%%", 100*f) }

func (r *report) hedgeMarkdown(p func(string, ...any)) {
	hp := r.cfg.hedge
	if len(r.tail) > 0 {
		p("\n## H1. Hedging: a heavy tail\n\n")
		p("Each attempt independently takes %v, or %v with probability %.0f%% (the server draws it per attempt, and stops at once when the attempt is cancelled). %.0f GETs a second for %v through one client per contender, all at once, each against its own server. Latency: from the call to the end of the body; extra load: the attempts the server received per request, less one. Nothing fails, so nothing is retried: the difference is hedging alone.\n\n",
			hp.fast, hp.slow, 100*hp.slowProb, hp.rate, hp.tailFor)
		p("| contender | setup | requests | p50 | p99 | p99.9 | extra load |\n|---|---|---:|---:|---:|---:|---:|\n")
		for _, x := range r.tail {
			p("| %s | %s | %d%s | %v | %v | %v | %s |\n", x.lib, x.setup, x.requests, failedText(x.failed), round(x.p50), round(x.p99), round(x.p999), pct(x.extra))
		}
		p("\n![latency percentiles and extra load in the heavy tail](tail.svg)\n")
	}
	if len(r.slow) > 0 {
		p("\n## H2. Hedging: everything slow\n\n")
		p("The server answers in %v, but for %v, from %v after the start, every answer takes %.0f× as long (%v), as an overloaded server's would. %.0f GETs a second for %v through one client per contender, all at once, each against its own server. In the spell: the requests offered during it, and every attempt the server received for them (each request carries its index in a header, which its copies carry too). A hedge of a uniformly slow server adds load and saves no time: the scenario measures how much each contender adds anyway.\n\n",
			hp.fast, hp.slowFor, hp.before, hp.factor, time.Duration(float64(hp.fast)*hp.factor), hp.rate, hp.before+hp.slowFor+hp.after)
		p("| contender | setup | requests in the spell | attempts for them | extra load in the spell | p99 in the spell | extra load, whole run |\n|---|---|---:|---:|---:|---:|---:|\n")
		for _, x := range r.slow {
			p("| %s | %s | %d | %d | %s | %v | %s |\n", x.lib, x.setup, x.slowRequests, x.slowAttempts, pct(x.slowExtra), round(x.slowP99), pct(x.extra))
		}
		p("\n![attempts received over time, the slow spell shaded, and the extra load in it](slow.svg)\n")
	}
	if len(r.metaHedge) > 0 {
		m := r.metaHedge
		p("\n## H3. Metastable failure with hedging on\n\n")
		p("The scenario of section 7, the same server, schedule and trigger, with retryhttp's hedging on (adaptive, and fixed at %v) beside retryhttp without it and the bare transport. Contenders ran %s. Columns as in section 7.\n\n", metaHedgeDelay,
			map[bool]string{true: "at once, each against its own server (-quick)", false: "one after another"}[r.cfg.metaConcurrent])
		p("| contender | setup | requests | succeeded | attempts per request | retries and hedges from the trigger on | load ×bare, at most | work wasted | recovery after the trigger |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range m {
			p("| %s | %s | %d | %d (%.0f%%) | %.2f | %d | %.2f | %d of %d served | %s |\n", x.lib, x.setup, x.requests, x.ok, 100*float64(x.ok)/float64(x.requests),
				float64(x.attempts)/float64(x.requests), x.retriesFromTrigger, x.maxLoadRatio, x.wasted, x.served, recoveryText(x.recovered, x.recovery))
		}
		p("\n![goodput and load through the trigger, hedging on](metastable-hedge.svg)\n")
	}
	var lines []string
	r.hedgeTargets(checker(&lines))
	if len(lines) > 0 {
		p("\n## Targets for retryhttp's hedging\n\n")
		for _, line := range lines {
			p("- %s\n", line)
		}
	}
}

func failedText(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d failed)", n)
}

// hedgeTargets checks retryhttp's hedging targets against the run.
func (r *report) hedgeTargets(check func(ok bool, format string, a ...any)) {
	for _, x := range r.tail {
		if x.lib == "retryhttp, fixed" || x.lib == "retryhttp, adaptive" {
			check(x.p99 <= targetTailP99 && x.extra <= targetTailExtra,
				"heavy tail, %s: p99 %v at %s extra load (target: p99 ≤ %v at ≤ %.0f%% extra load)", x.lib, round(x.p99), pct(x.extra), targetTailP99, 100*targetTailExtra)
		}
	}
	if len(r.slow) > 0 {
		bare := r.slow[0]
		for _, x := range r.slow {
			if x.lib == "retryhttp, fixed" || x.lib == "retryhttp, adaptive" {
				over := (1 + x.slowExtra) / (1 + bare.slowExtra)
				check(over-1 <= targetSlowExtraOver, "everything slow, %s: %s load over no hedging in the slow spell (target ≤ +%.0f%%)", x.lib, pct(over-1), 100*targetSlowExtraOver)
			}
		}
	}
	if len(r.metaHedge) > 2 {
		bare, unhedged := r.metaHedge[0], r.metaHedge[1]
		for _, x := range r.metaHedge[2:] {
			check(x.recovered && bare.recovered && x.recovery <= bare.recovery+targetRecoveryLag,
				"metastable failure, %s: recovered %s after the trigger, the bare transport %s (target: no more than %v after it)",
				x.lib, recoveryText(x.recovered, x.recovery), recoveryText(bare.recovered, bare.recovery), targetRecoveryLag)
			check(x.maxLoadRatio <= targetLoadRatio,
				"metastable failure, %s: load at most ×%.2f the bare transport's in any 1 s window from the trigger on, retryhttp without hedging ×%.2f (target ≤ ×%.1f, as in section 7)",
				x.lib, x.maxLoadRatio, unhedged.maxLoadRatio, targetLoadRatio)
		}
	}
}
