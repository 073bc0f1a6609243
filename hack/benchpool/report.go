/*
Copyright 2026 The infergate Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/routing"
)

// phase is a workload at a share of the pool's capacity, with every configuration's results.
type phase struct {
	workload *workload
	share    float64
	rate     float64 // requests per second
	capacity float64
	results  []result
}

// report gathers the phases and writes them as Markdown, with the targets checked
// against round-robin and the oracle in the same phase.
type report struct {
	pool, weights []int
	phases        []phase
	fallback      *fallbackPhase // the fallback phase, when run
}

func (r *report) add(p phase) { r.phases = append(r.phases, p) }

// figures summarises one configuration's outcomes sent inside the measured window.
type figures struct {
	n, errors, deferred int
	ttftP50, ttftP99    time.Duration
	e2eP99              time.Duration
	tokensPerSecond     float64
	hitRate             float64 // cached prompt tokens over prompt tokens
	firstError          error
}

func summarise(res result) figures {
	var f figures
	var ttft, e2e []time.Duration
	var prompt, cached int
	for _, o := range res.outcomes {
		if o.sent < *warmup {
			continue
		}
		f.n++
		if o.deferred {
			f.deferred++
		}
		if o.err != nil {
			if f.errors++; f.firstError == nil {
				f.firstError = o.err
			}
			continue
		}
		ttft, e2e = append(ttft, o.ttft), append(e2e, o.e2e)
		prompt += o.prompt
		cached += o.cached
	}
	f.ttftP50, f.ttftP99 = quantile(ttft, 0.5), quantile(ttft, 0.99)
	f.e2eP99 = quantile(e2e, 0.99)
	f.tokensPerSecond = float64(res.tokens) / (*duration - *warmup).Seconds()
	if prompt > 0 {
		f.hitRate = float64(cached) / float64(prompt)
	}
	return f
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// list writes v as "8, 8, 3".
func list(v []int) string {
	return strings.Trim(strings.Join(strings.Fields(fmt.Sprint(v)), ", "), "[]")
}

// met tells whether a target is met.
func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "Pool: %d simulated servers with max-num-seqs %s, weights %s in the entity; %d output tokens per request; %v of arrivals per phase, the first %v left out.\n",
		len(r.pool), list(r.pool), list(r.weights), outputTokens, *duration, *warmup)
	var checks []string
	for _, p := range r.phases {
		fmt.Fprintf(w, "\n### %s at %.0f %% of capacity (%.1f requests/s; capacity %.1f/s)\n\n", p.workload.name, p.share*100, p.rate, p.capacity)
		fmt.Fprintln(w, "| configuration | requests | TTFT p50 | TTFT p99 | E2E p99 | output tokens/s | prefix cache hits | errors | picks: preferred / spilled |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
		figs := map[string]figures{}
		for _, res := range p.results {
			if res.outcomes == nil {
				continue
			}
			f := summarise(res)
			figs[res.config.name] = f
			errs := fmt.Sprint(f.errors)
			if f.firstError != nil {
				errs += fmt.Sprintf(" (%.60s)", f.firstError)
			}
			shares := ""
			if total := res.picks["preferred"] + res.picks["spilled"]; total > 0 {
				shares = fmt.Sprintf("%.0f %% / %.0f %%", 100*res.picks["preferred"]/total, 100*res.picks["spilled"]/total)
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %.0f | %.0f %% | %s | %s |\n", res.config.name, f.n, ms(f.ttftP50), ms(f.ttftP99), ms(f.e2eP99), f.tokensPerSecond, f.hitRate*100, errs, shares)
		}
		checks = append(checks, targets(p, figs)...)
	}
	if r.fallback != nil {
		checks = append(checks, r.fallback.write(w)...)
	}
	if len(checks) > 0 {
		fmt.Fprintln(w, "\n### Targets (against RoundRobin and the oracle in the same phase; the fallback phase's against its unsaturated reference)")
		fmt.Fprintln(w)
		for _, c := range checks {
			fmt.Fprintln(w, "- "+c)
		}
	}
}

// targets checks the targets in a phase. With independent prompts: TTFT p99 at 80 %
// of capacity. With conversations and with shared system prompts, at every load: TTFT p50 and
// p99 against RoundRobin's, prefix cache hits against the oracle's, and what two replicas keep
// of one's TTFT p50 gain; the oracle's TTFT ratios for reference. At 95 %: output tokens/s.
func targets(p phase, figs map[string]figures) []string {
	name := func(b routing.Balancing, replicas int) string {
		for _, c := range configs {
			if !c.direct && c.balancing == b && c.replicas == replicas {
				return c.name
			}
		}
		return ""
	}
	oracleName := ""
	for _, c := range configs {
		if c.direct {
			oracleName = c.name
		}
	}
	ca, ok1 := figs[name(routing.CacheAware, 1)]
	rr, ok2 := figs[name(routing.RoundRobin, 1)]
	two, ok3 := figs[name(routing.CacheAware, 2)]
	oracle, ok4 := figs[oracleName]
	if !ok1 || !ok2 {
		return nil
	}
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
	at := fmt.Sprintf("%s at %.0f %%", p.workload.name, p.share*100)
	var out []string
	p50 := func(f figures) time.Duration { return f.ttftP50 }
	p99 := func(f figures) time.Duration { return f.ttftP99 }
	gain := func(f figures, q func(figures) time.Duration) float64 { return float64(q(rr) - q(f)) }
	if !p.workload.sticky() {
		// Independent prompts: two replicas against one, where one gains something worth
		// keeping (a fifth of RoundRobin's TTFT p99), and TTFT p99 at 80 %.
		if g := gain(ca, p99); ok3 && g > 0.2*float64(rr.ttftP99) {
			kept := gain(two, p99) / g
			out = append(out, fmt.Sprintf("%s: two replicas keep %.0f %% of one replica's TTFT p99 gain (target ≥ 75 %%): %s", at, kept*100, met(kept >= 0.75)))
		}
		if p.share >= 0.79 && p.share <= 0.81 {
			r := ratio(ca.ttftP99, rr.ttftP99)
			out = append(out, fmt.Sprintf("%s: TTFT p99 %.2f× RoundRobin's (target ≤ 0.5): %s", at, r, met(r <= 0.5)))
		}
	} else {
		r50, r99 := ratio(ca.ttftP50, rr.ttftP50), ratio(ca.ttftP99, rr.ttftP99)
		out = append(out,
			fmt.Sprintf("%s: TTFT p50 %.2f× RoundRobin's (target ≤ 0.25): %s", at, r50, met(r50 <= 0.25)),
			fmt.Sprintf("%s: TTFT p99 %.2f× RoundRobin's (target ≤ 0.75): %s", at, r99, met(r99 <= 0.75)))
		if ok4 {
			line := fmt.Sprintf("%s: prefix cache hits %.0f %%, the oracle's %.0f %%", at, ca.hitRate*100, oracle.hitRate*100)
			if oracle.hitRate > 0 {
				r := ca.hitRate / oracle.hitRate
				line += fmt.Sprintf(": %.0f %% of the oracle's (target ≥ 80 %%): %s", r*100, met(r >= 0.8))
			} else {
				line += ": NOT measured (the oracle hit nothing)"
			}
			out = append(out, line)
		}
		if ok3 {
			if g := gain(ca, p50); g > 0 {
				kept := gain(two, p50) / g
				line := fmt.Sprintf("%s: two replicas keep %.0f %% of one replica's TTFT p50 gain (target ≥ 75 %%): %s", at, kept*100, met(kept >= 0.75))
				if g < 0.2*float64(rr.ttftP50) {
					line += fmt.Sprintf(" (a gain of %s, within noise)", ms(time.Duration(g)))
				}
				out = append(out, line)
			} else {
				out = append(out, fmt.Sprintf("%s: two replicas keep one replica's TTFT p50 gain (target ≥ 75 %%): NOT met, one replica gains nothing (%s against RoundRobin's %s)", at, ms(ca.ttftP50), ms(rr.ttftP50)))
			}
		}
		if ok4 {
			out = append(out, fmt.Sprintf("%s: the oracle's TTFT p50 %.2f× and p99 %.2f× RoundRobin's (reference)", at, ratio(oracle.ttftP50, rr.ttftP50), ratio(oracle.ttftP99, rr.ttftP99)))
		}
	}
	if p.share >= 0.95 {
		r := ca.tokensPerSecond / rr.tokensPerSecond
		out = append(out, fmt.Sprintf("%s: output tokens/s %.2f× RoundRobin's (target ≥ 1, within noise): %s", at, r, met(r >= 0.98)))
	}
	return out
}
