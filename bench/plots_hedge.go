package main

import (
	"fmt"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writeHedgePlots writes tail.svg/png, slow.svg/png and
// metastable-hedge.svg/png for the hedging scenarios that ran.
func writeHedgePlots(dir string, r *report) error {
	if len(r.tail) > 0 {
		row, err := tailPlots(r)
		if err != nil {
			return err
		}
		if err := saveBoth(row, 12*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "tail")); err != nil {
			return err
		}
	}
	if len(r.slow) > 0 {
		row, err := slowPlots(r)
		if err != nil {
			return err
		}
		if err := saveBoth(row, 12*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "slow")); err != nil {
			return err
		}
	}
	if len(r.metaHedge) > 0 {
		if err := saveBoth(metaPlots(r.metaHedge), 12*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "metastable-hedge")); err != nil {
			return err
		}
	}
	return nil
}

// extraBars draws each contender's extra load, in percent.
func extraBars(title string, results []hedgeResult, extra func(hedgeResult) float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "extra load (%)"
	var names []string
	vals := plotter.Values{}
	for _, x := range results {
		names = append(names, x.lib)
		vals = append(vals, 100*extra(x))
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(24))
	if err != nil {
		return nil, err
	}
	bars.Color = plotutil.Color(1)
	p.Add(bars)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.4
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = -1, -0.5
	return p, nil
}

// tailPlots draws the latency percentiles (log scale) beside the extra load.
func tailPlots(r *report) (*plotRow, error) {
	lat := plot.New()
	lat.Title.Text = fmt.Sprintf("Heavy tail: %v, or %v with p = %.0f%%", r.cfg.hedge.fast, r.cfg.hedge.slow, 100*r.cfg.hedge.slowProb)
	lat.Y.Label.Text = "latency (ms, log scale)"
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	lat.Add(plotter.NewGrid())
	for _, x := range r.tail {
		pts := plotter.XYs{}
		for i, d := range []time.Duration{x.p50, x.p99, x.p999} {
			pts = append(pts, plotter.XY{X: float64(i), Y: max(float64(d)/float64(time.Millisecond), 0.1)})
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color = libColors[x.lib], libColors[x.lib]
		line.Width = vg.Points(1.5)
		lat.Add(line, points)
		lat.Legend.Add(x.lib, line, points)
	}
	lat.NominalX("p50", "p99", "p99.9")
	lat.Legend.Top, lat.Legend.Left = true, true
	extra, err := extraBars("Extra load: attempts per request − 1", r.tail, func(x hedgeResult) float64 { return x.extra })
	if err != nil {
		return nil, err
	}
	return &plotRow{lat, extra}, nil
}

// slowPlots draws the attempts received per second over time beside the
// extra load in the slow spell.
func slowPlots(r *report) (*plotRow, error) {
	const bucket = 500 * time.Millisecond
	hp := r.cfg.hedge
	load := plot.New()
	load.Title.Text = fmt.Sprintf("Everything %.0f× slower for %v (shaded): attempts received", hp.factor, hp.slowFor)
	load.X.Label.Text = "time (s)"
	load.Y.Label.Text = "attempts per second"
	top := 0.0
	span := ticks(hp.before + hp.slowFor + hp.after)
	for _, x := range r.slow {
		for _, v := range perSecond(x.load[:span], bucket) {
			top = max(top, v)
		}
	}
	shade(load, hp.before.Seconds(), (hp.before + hp.slowFor).Seconds(), top*1.05)
	load.Add(plotter.NewGrid())
	for _, x := range r.slow {
		vals := perSecond(x.load[:span], bucket)
		pts := make(plotter.XYs, len(vals))
		for k, v := range vals {
			pts[k] = plotter.XY{X: (time.Duration(k)*bucket + bucket/2).Seconds(), Y: v}
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		line.Color = libColors[x.lib]
		line.Width = vg.Points(1.3)
		load.Add(line)
		load.Legend.Add(x.lib, line)
	}
	load.Legend.Top, load.Legend.Left = true, true
	load.Y.Min = 0
	extra, err := extraBars("Extra load in the slow spell", r.slow, func(x hedgeResult) float64 { return x.slowExtra })
	if err != nil {
		return nil, err
	}
	return &plotRow{load, extra}, nil
}
