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
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/quota"
)

// report gathers the phases and writes them as Markdown, with every target checked.
type report struct {
	started, finished      time.Time
	spread, fallbackSpread []int
	limit                  int64
	warmup                 demand
	accuracy, fallback     *windowPhase
	latency                *latencyResult
	outages                []*outageResult
	checks                 []string
}

// demand is what the clients asked without a budget.
type demand struct {
	requests        int
	perSecond       float64
	tokensPerMinute float64
	meanTokens      float64
	failed          int
}

// summarize measures the warm-up's demand over its requests that started after the clients'
// first, staggered, requests.
func summarize(recs []record, d time.Duration) demand {
	var out demand
	if len(recs) == 0 {
		return out
	}
	first := recs[0].start
	for _, r := range recs {
		if r.start.Before(first) {
			first = r.start
		}
	}
	from := first.Add(min(2**think, d/2))
	span := first.Add(d).Sub(from).Seconds()
	var tokens int64
	for _, r := range recs {
		if r.start.Before(from) {
			continue
		}
		out.requests++
		if r.status != 200 {
			out.failed++
			continue
		}
		tokens += r.tokens()
	}
	out.perSecond = float64(out.requests) / span
	out.tokensPerMinute = float64(tokens) / span * 60
	if n := out.requests - out.failed; n > 0 {
		out.meanTokens = float64(tokens) / float64(n)
	}
	return out
}

// windowPhase is the accuracy or the fallback phase.
type windowPhase struct {
	budget       *quota.Budget
	start, first time.Time
	windows      int
	records      []record
	counters     map[time.Time]int64 // the store's counter of each window, read after it settled
	store        bool
}

// window sums the records that started in the window from w: what the clients saw admitted.
type window struct {
	start                     time.Time
	tokens                    int64
	perReplica                [replicas]int64
	admitted, refused, others int
	clamped                   int
	unavailable               int
	fallbackTokens            int64 // admitted while a replica enforced its share alone
	fallbackPerReplica        [replicas]int64
}

func windowsOf(recs []record, starts []time.Time, limit int64) []window {
	out := make([]window, len(starts))
	for i, s := range starts {
		out[i].start = s
	}
	for _, r := range recs {
		w := r.start.Truncate(time.Minute)
		i := slices.IndexFunc(starts, func(s time.Time) bool { return s.Equal(w) })
		if i < 0 {
			continue
		}
		o := &out[i]
		switch {
		case r.status == 200:
			o.admitted++
			o.tokens += r.tokens()
			o.perReplica[r.replica] += r.tokens()
			if r.clamped {
				o.clamped++
			}
			if r.limit > 0 && r.limit < limit {
				o.fallbackTokens += r.tokens()
				o.fallbackPerReplica[r.replica] += r.tokens()
			}
		case r.status == 429:
			o.refused++
		case r.status == 503 && r.code == "budget_unavailable":
			o.unavailable++
		default:
			o.others++
		}
	}
	return out
}

// failures counts the answers that are neither 200, 429 nor 503 budget_unavailable, and
// transport errors and broken streams, with the first of them.
func failures(recs []record) (n int, first string) {
	for _, r := range recs {
		if r.status == 200 || r.status == 429 || (r.status == 503 && r.code == "budget_unavailable") {
			continue
		}
		if n++; first == "" {
			first = fmt.Sprintf("status %d %s %s", r.status, r.code, r.err)
		}
	}
	return n, first
}

func (r *report) check(ok bool, format string, args ...any) {
	mark := "**MISS**"
	if ok {
		mark = "PASS"
	}
	r.checks = append(r.checks, mark+": "+fmt.Sprintf(format, args...))
}

func pct(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, "/") + " %"
}

func num(v int64) string {
	s := fmt.Sprint(v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "−" + b.String()
	}
	return b.String()
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "Run %s to %s (%s), %s, GOMAXPROCS %d, %d CPUs.\n\n", r.started.Format("2006-01-02 15:04"), r.finished.Format("15:04"),
		r.finished.Sub(r.started).Round(time.Second), runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(w, "Setup: %d gateway replicas, %d simulators (%v per output token), %d clients (half streaming, OpenAI Go SDK), a pause of %v on average between a client's requests; "+
		"each request max_tokens %d to %d, %d to %d tokens of its own, a user message of %d to %d bytes.\n",
		replicas, *servers, *chunkDelay, *clients, *think, minCap, maxCap, minLen, maxLen, minPrompt, maxPrompt)
	fmt.Fprintf(w, "Command: `%s`.\n", strings.Join(append([]string{"benchbudget"}, os.Args[1:]...), " "))
	if *flushFlag {
		fmt.Fprintln(w, "Experiment -flush-complete: every gateway response with a Content-Length is flushed as soon as it is written, before the gateway settles.")
	}
	if r.warmup.requests > 0 {
		fmt.Fprintf(w, "\nWarm-up without a budget: %.1f requests/s, %.0f tokens per request, demand **%s tokens per minute** (%d failed).\n",
			r.warmup.perSecond, r.warmup.meanTokens, num(int64(r.warmup.tokensPerMinute)), r.warmup.failed)
		r.check(r.warmup.failed == 0, "warm-up: %d requests failed without a budget", r.warmup.failed)
	}
	fmt.Fprintf(w, "Budget: tokensPerMinute **%s** (input and output tokens).\n", num(r.limit))
	if p := r.accuracy; p != nil {
		r.writeAccuracy(w, p)
	}
	if p := r.fallback; p != nil {
		r.writeFallback(w, p)
	}
	if l := r.latency; l != nil {
		r.writeLatency(w, l)
	}
	for _, o := range r.outages {
		r.writeOutage(w, o)
	}
	fmt.Fprintln(w, "\n### Targets")
	fmt.Fprintln(w)
	for _, c := range r.checks {
		fmt.Fprintln(w, "- "+c)
	}
}

func (p *windowPhase) starts() []time.Time {
	var out []time.Time
	for i := range p.windows {
		out = append(out, p.first.Add(time.Duration(i)*time.Minute))
	}
	return out
}

func (r *report) writeAccuracy(w io.Writer, p *windowPhase) {
	limit := p.budget.Limits[0].Max
	fmt.Fprintf(w, "\n### Accuracy: the budget on Redis, clients spread %s over the replicas\n\n", pct(r.spread))
	fmt.Fprintln(w, "| window | store counter | of the limit | clients' usage | clients − store | admitted | clamped | refused (429) | other |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	ramp := p.start.Truncate(time.Minute)
	all := windowsOf(p.records, append([]time.Time{ramp}, p.starts()...), limit)
	lo, hi := math.Inf(1), math.Inf(-1)
	var diff int64
	for i, win := range all {
		c := p.counters[win.start]
		ratio := float64(c) / float64(limit)
		label := win.start.Format("15:04")
		if i == 0 {
			label += " (from " + p.start.Format(":05") + ", left out)"
		} else {
			lo, hi = min(lo, ratio), max(hi, ratio)
			diff = max(diff, abs(win.tokens-c))
		}
		fmt.Fprintf(w, "| %s | %s | %.4f | %s | %s | %d | %d | %d | %d |\n", label, num(c), ratio, num(win.tokens), num(win.tokens-c), win.admitted, win.clamped, win.refused, win.others)
	}
	if len(all) > 1 {
		fmt.Fprintf(w, "\nOver %d windows: admitted/limit from **%.4f to %.4f**; the clients' usage and the store's counter differ by %s tokens at most.\n", len(all)-1, lo, hi, num(diff))
		r.check(hi <= 1.01, "Redis: admitted tokens ≤ 1.01 × the limit in every window: max %.4f over %d windows", hi, len(all)-1)
		r.check(lo >= 0.97, "Redis: admitted tokens ≥ 0.97 × the limit in every window (demand about %.1f×): min %.4f", r.warmup.tokensPerMinute/float64(limit), lo)
	}
	n, first := failures(p.records)
	r.check(n == 0, "Redis: no failures other than 429 (%d; %s)", n, first)
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func (r *report) writeFallback(w io.Writer, p *windowPhase) {
	limit := p.budget.Limits[0].Max
	share := limit / replicas
	fmt.Fprintf(w, "\n### Comparison: no store, each replica enforcing limit / %d = %s alone, clients spread %s\n\n", replicas, num(share), pct(r.fallbackSpread))
	fmt.Fprintln(w, "| window | replica 1 | replica 2 | replica 3 | total | of the limit | refused (429) | other |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	lo, hi, worst := math.Inf(1), math.Inf(-1), 0.0
	for _, win := range windowsOf(p.records, p.starts(), limit) {
		ratio := float64(win.tokens) / float64(limit)
		lo, hi = min(lo, ratio), max(hi, ratio)
		for _, t := range win.perReplica {
			worst = max(worst, float64(t)/float64(share))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.4f | %d | %d |\n", win.start.Format("15:04"), num(win.perReplica[0]), num(win.perReplica[1]), num(win.perReplica[2]), num(win.tokens), ratio, win.refused, win.others)
	}
	fmt.Fprintf(w, "\nAdmitted/limit from %.4f to %.4f (the clients' usage); the most a replica admitted in a window is %.4f of its share.\n", lo, hi, worst)
	r.check(worst <= 1.01, "per replica: admitted tokens ≤ 1.01 × limit/%d per replica and window: max %.4f (total from %.4f to %.4f of the limit: the comparison)", replicas, worst, lo, hi)
	n, first := failures(p.records)
	r.check(n == 0, "per replica: no failures other than 429 (%d; %s)", n, first)
}

func (r *report) writeLatency(w io.Writer, l *latencyResult) {
	fmt.Fprintf(w, "\n### Added latency: %.0f non-streaming requests/s for %v, with and without the budget interleaved\n\n", l.rate, l.duration)
	fmt.Fprintln(w, "| side | requests | p50 | p90 | p99 | p99.9 | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	q := func(d []time.Duration, f float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(f*float64(len(d))))]
	}
	for i, name := range []string{"budget on Redis", "no budget"} {
		slices.Sort(l.lat[i])
		errs := fmt.Sprint(l.errors[i])
		if l.first[i] != "" {
			errs += fmt.Sprintf(" (%.80s)", l.first[i])
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", name, len(l.lat[i]), us(q(l.lat[i], 0.5)), us(q(l.lat[i], 0.9)), us(q(l.lat[i], 0.99)), us(q(l.lat[i], 0.999)), errs)
	}
	p50 := q(l.lat[0], 0.5) - q(l.lat[1], 0.5)
	p99 := q(l.lat[0], 0.99) - q(l.lat[1], 0.99)
	fmt.Fprintf(w, "| **added** | | **%s** | %s | **%s** | %s | |\n", us(p50), us(q(l.lat[0], 0.9)-q(l.lat[1], 0.9)), us(p99), us(q(l.lat[0], 0.999)-q(l.lat[1], 0.999)))
	fmt.Fprintln(w, "\nThe store's calls (`infergate_budget_store_duration_seconds`, all replicas; quantiles interpolated within buckets):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| operation | calls | mean | p50 | p99 |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, op := range []string{"reserve", "settle"} {
		h, ok := l.store[op]
		if !ok {
			continue
		}
		sec := func(v float64) string { return us(time.Duration(v * float64(time.Second))) }
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", op, h.count, sec(h.mean()), sec(h.quantile(0.5)), sec(h.quantile(0.99)))
	}
	if len(l.ping) > 0 {
		slices.Sort(l.ping)
		fmt.Fprintf(w, "| PING from a client of its own (the round trip alone) | %d | | %s | %s |\n", len(l.ping), us(q(l.ping, 0.5)), us(q(l.ping, 0.99)))
	}
	if l.scriptCalls > 0 {
		fmt.Fprintf(w, "\nInside redis-server (INFO commandstats): %d EVALSHA calls (reserve and settle), **%.1f µs each** on average.\n",
			l.scriptCalls, float64(l.scriptTime)/float64(time.Microsecond)/float64(l.scriptCalls))
	}
	r.check(p50 <= 300*time.Microsecond, "added latency p50 ≤ 300 µs: %s", us(p50))
	r.check(p99 <= 2*time.Millisecond, "added latency p99 ≤ 2 ms: %s", us(p99))
	r.check(l.errors[0]+l.errors[1] == 0, "latency phase: no errors (%d with the budget, %d without)", l.errors[0], l.errors[1])
}

func (r *report) writeOutage(w io.Writer, o *outageResult) {
	mode := "Closed"
	if o.open {
		mode = "Open"
	}
	fmt.Fprintf(w, "\n### Redis down for %v, failureMode %s\n\n", o.restart.Sub(o.kill).Round(100*time.Millisecond), mode)
	kept := "empty"
	if *appendOnly {
		kept = "from its append-only file"
	}
	fmt.Fprintf(w, "Load from %s; redis-server killed at %s, started again (%s) at %s; load until %s.\n\n", o.start.Format("15:04:05"), o.kill.Format("15:04:05"), kept, o.restart.Format("15:04:05"), o.end.Format("15:04:05"))
	type period struct {
		name     string
		from, to time.Time
	}
	periods := []period{{"before", o.start, o.kill}, {"Redis down", o.kill, o.restart}, {"after", o.restart, o.end}}
	fmt.Fprintln(w, "| requests started | 200 | of which via fallback | 429 | 503 budget_unavailable | other answers | transport errors, broken streams |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	var okDuring, unavailableAfter, okAfter int
	var recovered time.Time
	var lastFallback time.Time
	for pi, p := range periods {
		var ok, fb, refused, unavailable, other, transport int
		for _, rec := range o.records {
			if rec.start.Before(p.from) || !rec.start.Before(p.to) {
				continue
			}
			switch {
			case rec.status == 200:
				ok++
				if rec.limit > 0 && rec.limit < o.limit {
					fb++
					if rec.start.After(lastFallback) {
						lastFallback = rec.start
					}
				} else if pi == 2 && (recovered.IsZero() || rec.start.Before(recovered)) {
					recovered = rec.start
				}
			case rec.status == 429:
				refused++
			case rec.status == 503 && rec.code == "budget_unavailable":
				unavailable++
			case rec.status == 0:
				transport++
			default:
				other++
			}
		}
		switch pi {
		case 1:
			okDuring = ok
		case 2:
			unavailableAfter, okAfter = unavailable, ok
		}
		fmt.Fprintf(w, "| %s (%s to %s) | %d | %d | %d | %d | %d | %d |\n", p.name, p.from.Format("15:04:05"), p.to.Format("15:04:05"), ok, fb, refused, unavailable, other, transport)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| window | admitted tokens (clients) | of the limit | via the store | via fallback | fallback per replica (of limit/3) | store counter after |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	share := o.limit / replicas
	worstShare, worstTotal := 0.0, 0.0
	for i, win := range windowsOf(o.records, o.windowStarts, o.limit) {
		ratio := float64(win.tokens) / float64(o.limit)
		worstTotal = max(worstTotal, ratio)
		per := make([]string, replicas)
		for k, t := range win.fallbackPerReplica {
			per[k] = fmt.Sprintf("%.3f", float64(t)/float64(share))
			worstShare = max(worstShare, float64(t)/float64(share))
		}
		label := win.start.Format("15:04")
		if i == 0 && o.start.After(win.start) {
			label += " (from " + o.start.Format(":05") + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %.4f | %s | %s | %s | %s |\n", label, num(win.tokens), ratio, num(win.tokens-win.fallbackTokens), num(win.fallbackTokens), strings.Join(per, " / "), num(o.counters[win.start]))
	}
	n, first := failures(o.records)
	if !recovered.IsZero() {
		fmt.Fprintf(w, "\nThe first request admitted through the store again started %s after redis-server came back.", recovered.Sub(o.restart).Round(time.Millisecond))
	}
	if !lastFallback.IsZero() && lastFallback.After(o.restart) {
		fmt.Fprintf(w, " The last one admitted through the fallback started %s after.", lastFallback.Sub(o.restart).Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	if o.open {
		unavailable := 0
		for _, rec := range o.records {
			if rec.status == 503 {
				unavailable++
			}
		}
		r.check(unavailable == 0 && n == 0, "Open: nothing fails: %d answers 503, %d other failures (%s)", unavailable, n, first)
		r.check(worstShare <= 1.01, "Open: each replica admits ≤ 1.01 × limit/%d per window alone while Redis is down: max %.4f", replicas, worstShare)
		r.check(worstTotal <= 1.01, "Open (expectation, not the issue's target): admitted tokens ≤ 1.01 × the limit in every window around the outage: max %.4f", worstTotal)
	} else {
		r.check(n == 0, "Closed: nothing else fails (only 200, 429 and 503 budget_unavailable): %d others (%s)", n, first)
		r.check(okDuring == 0, "Closed: no request admitted while Redis is down: %d", okDuring)
		r.check(okAfter > 0 && !recovered.IsZero(), "Closed: requests admitted again after Redis returns: %d, the first %s after (%d answers 503 after)", okAfter, recovered.Sub(o.restart).Round(time.Millisecond), unavailableAfter)
		r.check(worstTotal <= 1.01, "Closed (expectation, not the issue's target): admitted tokens ≤ 1.01 × the limit in every window around the outage: max %.4f", worstTotal)
	}
}
