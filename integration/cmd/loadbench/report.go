package main

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Output.

func (r *result) print(w io.Writer) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "\ncaddy-bff loadbench: %d rounds × %s per site (after 1s warm-up each), %d connections, loopback\n",
		r.Rounds, r.Duration, r.Conns)
	fmt.Fprintf(bw, "  %d CPUs; GOMAXPROCS: load generator + upstream %d, caddy %s; %d distinct session(s) on B\n\n", r.NumCPU, r.GOMAXPROCS, r.CaddyEnv, r.Sessions)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  site\tchain\treq/s\tp50\tp99\tCPU/req: caddy\tloadgen+upstream\trounds (req/s)")
	for _, s := range []struct {
		name string
		s    siteSummary
	}{{"A", r.A}, {"B", r.B}} {
		cpu, self := "n/a", "n/a"
		if s.s.CPUPerReqUS > 0 {
			cpu = fmt.Sprintf("%.1fµs", s.s.CPUPerReqUS)
			self = fmt.Sprintf("%.1fµs", s.s.SelfPerReqUS)
		}
		var rounds []string
		for _, v := range s.s.RPS {
			rounds = append(rounds, strconv.FormatFloat(v, 'f', 0, 64))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.0f\t%.2fms\t%.2fms\t%s\t%s\t%s\n", s.name, s.s.Label, s.s.MedianRPS, s.s.P50ms, s.s.P99ms, cpu, self, strings.Join(rounds, " "))
	}
	_ = tw.Flush()
	verdict := fmt.Sprintf("meets the gate (≥ %.2f)", r.Target)
	if r.Ratio < r.Target {
		verdict = fmt.Sprintf("BELOW the gate (%.2f)", r.Target)
	}
	fmt.Fprintf(bw, "\n  throughput ratio B/A (median of the per-round ratios): %.3f — %s\n", r.Ratio, verdict)
	var pr []string
	for _, p := range r.PairRatios {
		pr = append(pr, strconv.FormatFloat(p, 'f', 3, 64))
	}
	fmt.Fprintf(bw, "  per-round ratios: %s\n", strings.Join(pr, " "))
	if r.CPURatio > 0 {
		fmt.Fprintf(bw, "  caddy CPU per request B/A: %.2f× (%+.1fµs per request)\n", r.CPURatio, r.CPUDiffUS)
	}
	if r.P99Ratio > 0 {
		p99 := "within"
		if r.P99Ratio > 1.05 {
			p99 = "ABOVE"
		}
		fmt.Fprintf(bw, "  p99 B/A: %.3f (%s bare p99 + 5%%)\n", r.P99Ratio, p99)
	}
	if r.OtherLoad >= 0.10 {
		fmt.Fprintf(bw, "  WARNING: other processes used up to %.0f%% of the CPUs during a round; the numbers are noisy\n", 100*r.OtherLoad)
	}
	if r.Profile != "" {
		fmt.Fprintf(bw, "  caddy CPU profiles (round 1 of each site, slowed by the profiling): %s\n", filepath.Join(r.Profile, "{a,b}.pprof"))
	}
	fmt.Fprintf(bw, "  elapsed %s\n", r.Elapsed)
}

// printPeers prints one row per target of a -peer comparison: B's
// figures, the bare proxy's of the same run, and the ratio.
func printPeers(w io.Writer, o options, results []*result) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	if len(results) == 0 {
		fmt.Fprintln(bw, "\ncaddy-bff loadbench -peer: no target ran")
		return
	}
	r0 := results[0]
	fmt.Fprintf(bw, "\ncaddy-bff loadbench -peer: each target is site B of its own run against a bare reverse_proxy (site A, caddy %s),\n", mustPinnedCaddy())
	fmt.Fprintf(bw, "  same OP, upstream and load: %d rounds × %s per site, %d connections, loopback, %d CPUs", r0.Rounds, r0.Duration, r0.Conns, r0.NumCPU)
	if o.aCookie {
		fmt.Fprint(bw, "; the session cookie goes to bare too")
	}
	fmt.Fprint(bw, "\n\n")
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  target\tversion\treq/s\tp50\tp99\tproxy CPU/req\tbare req/s\tbare CPU/req\tratio to bare")
	cpu := func(v float64) string {
		if v <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1fµs", v)
	}
	maxOther := 0.0
	for _, r := range results {
		name := r.Name
		if name == "chain" {
			name = "caddy-bff chain (" + o.store + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.0f\t%.2fms\t%.2fms\t%s\t%.0f\t%s\t%.3f\n", name, r.Version, r.B.MedianRPS, r.B.P50ms, r.B.P99ms,
			cpu(r.B.CPUPerReqUS), r.A.MedianRPS, cpu(r.A.CPUPerReqUS), r.Ratio)
		maxOther = max(maxOther, r.OtherLoad)
	}
	_ = tw.Flush()
	fmt.Fprintln(bw, "\n  ratio to bare: the median of the per-round req/s ratios B/A; proxy CPU/req: the gateway process's own CPU time per request")
	for _, r := range results {
		fmt.Fprintf(bw, "  %s: %s\n", r.Name, r.B.Label)
	}
	if maxOther >= 0.10 {
		fmt.Fprintf(bw, "  WARNING: other processes used up to %.0f%% of the CPUs during a round; the numbers are noisy\n", 100*maxOther)
	}
}
