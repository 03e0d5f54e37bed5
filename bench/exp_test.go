package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestExp(t *testing.T) {
	cfg := simFullConfig()
	if os.Getenv("MID") != "" {
		cfg.fleets = []int{20, 200, 1000, 10000}
	}
	if w := os.Getenv("WARM"); w != "" {
		cfg.fleet.warmup, _ = time.ParseDuration(w)
	}
	loop := metaFullParams()
	filter := os.Getenv("EXP")
	bare := map[int]simMetaResult{}
	for _, n := range cfg.fleets {
		p := cfg.fleet
		p.clients = n
		bare[n] = simMetastable(p, simClients[0].make)
	}
	bl := simMetastable(loop, simClients[0].make)
	fmt.Printf("bare loop %v %v peak %.2f | fleets", bl.recovered, bl.recovery, bl.peak)
	for _, n := range cfg.fleets {
		fmt.Printf(" %d:%v", n, bare[n].recovery)
	}
	fmt.Println()
	for _, d := range cfg.designs {
		if filter != "" && !strings.Contains(d.name, filter) {
			continue
		}
		st := time.Now()
		amp, _, _ := simTotalOutage(d)
		ok, n := simBlip(d)
		hok, hn := simBlipHistory(d)
		fmt.Printf("  history blip %d/%d\n", hok, hn)
		tr := simMetastable(loop, designClient(d))
		line := fmt.Sprintf("%-70.70s out %.2f blip %d/%d loop %v/%v %.2f ×%.2f |", d.name, amp, ok, n, tr.recovered, tr.recovery, float64(tr.attempts)/float64(tr.requests), tr.peak)
		for _, k := range cfg.fleets {
			p := cfg.fleet
			p.clients = k
			r := simMetastable(p, designClient(d))
			line += fmt.Sprintf(" %d: %v/%v %.2f ×%.2f |", k, r.recovered, r.recovery, float64(r.attempts)/float64(r.requests), r.peak)
		}
		fmt.Println(line, time.Since(st).Round(time.Second))
	}
}
