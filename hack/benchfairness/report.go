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
	"net/http"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/routing"
)

// report gathers the phases and writes them as Markdown, ending with the targets.
type report struct {
	pool     []int
	solo     soloResult
	fairness []fairResult
	work     []workResult
	critSolo soloResult
	priority priorityResult
	overhead overheadResult
	elapsed  time.Duration
}

// ttfts summarises open-loop outcomes sent inside [from, to).
type ttfts struct {
	n, ok, refused, failed int
	p50, p90, p99          time.Duration
	firstErr               error
}

func summarise(out []outcome, from, to time.Duration) ttfts {
	var s ttfts
	var d []time.Duration
	for _, o := range out {
		if o.sent < from || o.sent >= to || (o.status == 0 && o.err == nil && o.tokens == 0) {
			continue // outside the window, or never sent
		}
		s.n++
		switch {
		case o.status == http.StatusTooManyRequests:
			s.refused++
		case o.err != nil:
			if s.failed++; s.firstErr == nil {
				s.firstErr = o.err
			}
		default:
			s.ok++
			d = append(d, o.ttft)
		}
	}
	s.p50, s.p90, s.p99 = quantile(d, 0.5), quantile(d, 0.9), quantile(d, 0.99)
	return s
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func check(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func errNote(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf(" (%.80s)", err)
}

func (q queueStats) line() string {
	return fmt.Sprintf("%.0f / %.0f / %.0f / %.0f / %.0f", q.outcomes["dispatched"], q.outcomes["timeout"], q.outcomes["full"], q.outcomes["shed"], q.outcomes["left"])
}

// meanWait is the mean wait in the gateway's queue of the requests of the classes or
// workspaces keys that waited.
func (q queueStats) meanWait(keys ...string) time.Duration {
	var s, n float64
	for _, k := range keys {
		s, n = s+q.waitSum[k], n+q.waitCount[k]
	}
	if n == 0 {
		return 0
	}
	return time.Duration(s / n * float64(time.Second))
}

// waits are the mean waits of the backlogged, the flooding and the quiet workspaces' requests.
func (q queueStats) waits() string {
	var b []string
	for ws := range backlogged {
		b = append(b, wsName(ws))
	}
	return fmt.Sprintf("%s / %s / %s", ms(q.meanWait(b...)), ms(q.meanWait(wsName(flooder))), ms(q.meanWait(wsName(quietA), wsName(quietB))))
}

func (l serverLoad) line() string {
	return fmt.Sprintf("%.1f / %.1f (max %.0f)", l.running, l.waiting, l.maxWaiting)
}

func (l serverLoad) unknownLine() string {
	if len(l.learned) > 0 && l.unknownViews == 1 {
		return "always"
	}
	return fmt.Sprintf("%.1f %%, %d", 100*l.unknownViews, l.lapses)
}

func (l serverLoad) ageLine() string {
	if l.maxAge == 0 {
		return "none"
	}
	return ms(l.maxAge)
}

func (l serverLoad) learnedLine() string {
	parts := make([]string, len(l.learned))
	for i, c := range l.learned {
		parts[i] = fmt.Sprint(c)
		if c == 0 {
			parts[i] = "unknown"
		}
	}
	return strings.Join(parts, ", ")
}

func (r *report) write(w io.Writer) {
	capacity := sum(r.pool)
	queueTimeNote := (*queueTime).String()
	if *queueTime == 0 {
		queueTimeNote = routing.DefaultMaxQueueTime.String() + " (default)"
	}
	fmt.Fprintf(w, "Pool: %d simulated vLLM servers with max-num-seqs %s (capacity %d); %d to %d output tokens per request (max_tokens, uniform) at %v a decode step (+%v per other running sequence); prompts of %d to %d tokens (uniform) prefilled at %v a token, each unique (no prefix cache hits). "+
		"Gateway: the servers' metrics read every %v, spec.queue.maxTime %s, fair-share counters exchanged every %v through Redis with %d replicas. "+
		"Saturated runs of %v, the first %v left out; before each, a burst from another workspace teaches the gateways the servers' capacity (they queue only once they know it). Solo runs of %v. Closed-loop clients wait out a 429's Retry-After, except the flooding workspace's, which try again after %v and so stay backlogged. Run took %v.\n",
		len(r.pool), strings.Trim(strings.Join(strings.Fields(fmt.Sprint(r.pool)), ", "), "[]"), capacity, *chunks/2, *chunks*3/2, *chunkDelay, *perSeq, *promptToks/2, *promptToks*3/2, *prefill,
		*interval, queueTimeNote, *exchange, *replicas, *duration, *warmup, *soloDur, *retryPause, r.elapsed.Round(time.Second))
	var checks []string

	soloQuiet := summarise(r.solo.outcomes, 0, *soloDur)
	if r.solo.outcomes != nil || len(r.fairness) > 0 {
		fmt.Fprintf(w, "\n### Solo baseline: the quiet workspaces alone on an idle pool (one replica)\n\n")
		fmt.Fprintln(w, "| workload | requests | TTFT p50 | TTFT p90 | TTFT p99 | 429 | errors | waited in the gateway's queue |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		fmt.Fprintf(w, "| %s, %s, Poisson %g/s each | %d | %s | %s | %s | %d | %d%s | %.0f |\n", wsName(quietA), wsName(quietB), *quietRate, soloQuiet.n, ms(soloQuiet.p50), ms(soloQuiet.p90), ms(soloQuiet.p99),
			soloQuiet.refused, soloQuiet.failed, errNote(soloQuiet.firstErr), r.solo.queue.outcomes["dispatched"])
	}

	if len(r.fairness) > 0 {
		fair := 1.0 / float64(backlogged+1)
		fmt.Fprintf(w, "\n### Fairness: %d backlogged workspaces (%d streams each), one flooding (%d streams), two quiet (Poisson %g/s each)\n\n", backlogged, *streams, *streams**flood, *quietRate)
		fmt.Fprintf(w, "Jain's index over the output tokens served in the window; the flooder's share is of the tokens served to the eight (fair: %.1f %%).\n\n", 100*fair)
		fmt.Fprintln(w, "| configuration | Jain, 7 backlogged + flooder | Jain, 7 backlogged | flooder's share | output tokens/s, pool | quiet requests | quiet TTFT p50 | quiet TTFT p90 | quiet TTFT p99 | p99 / solo | quiet 429 / errors | others' 429 |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, f := range r.fairness {
			x := make([]float64, backlogged+1)
			total, all := 0.0, 0.0
			var refused int64
			for ws := range backlogged + 1 {
				x[ws] = f.c.tokensPerSecond(ws)
				total += x[ws]
				refused += f.c.refused[ws]
			}
			for ws := range workspaces {
				all += f.c.tokensPerSecond(ws)
			}
			j8, j7 := jain(x), jain(x[:backlogged])
			q := summarise(f.quiet, *warmup, *duration)
			rq := ratio(q.p99, soloQuiet.p99)
			fmt.Fprintf(w, "| %s | %.3f | %.3f | %.1f %% | %.0f | %d | %s | %s | %s | %.1f× | %d / %d%s | %d |\n", f.cfg.name, j8, j7, 100*x[flooder]/total, all,
				q.n, ms(q.p50), ms(q.p90), ms(q.p99), rq, q.refused, q.failed, errNote(q.firstErr), refused)
			if f.cfg.metrics {
				checks = append(checks,
					fmt.Sprintf("Jain's index ≥ 0.95, %s: %.3f over the backlogged and the flooder (%.3f over the 7 backlogged): %s", f.cfg.name, j8, j7, check(j8 >= 0.95)),
					fmt.Sprintf("quiet TTFT p99 ≤ 2× solo, %s: %s against %s, %.1f×: %s", f.cfg.name, ms(q.p99), ms(soloQuiet.p99), rq, check(rq <= 2)))
			} else {
				checks = append(checks, fmt.Sprintf("for reference, %s: Jain %.3f (7 backlogged: %.3f), quiet TTFT p99 %s, %.1f× solo (issue: expected near 10×)", f.cfg.name, j8, j7, ms(q.p99), rq))
			}
		}
		fmt.Fprintf(w, "\nThe gateway's queue and the servers in the measured window: requests that waited in the gateway's queue, by outcome (infergate_gateway_queue_outcomes_total, every replica, counted in the window: dispatched when a slot freed / timeout / full / shed / left); their mean wait by kind of workspace; the servers' own running / waiting requests (means of their metrics, every 100 ms); the capacity each replica learned; the share of samples (every 5 ms) where a replica did not know it, and how many times that began (the room is then unbounded: whatever waits goes to the servers); the age of the oldest server report a replica held (older than 3 scrape intervals, %v, it no longer counts).\n", 3**interval)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| configuration | waited: dispatched / timeout / full / shed / left | mean wait: backlogged / flooder / quiet | servers: running / waiting | capacity learned | capacity unknown: share of samples, lapses | oldest report held | counter exchanges ok / failed |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		for _, f := range r.fairness {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %.0f / %.0f |\n", f.cfg.name, f.queue.line(), f.queue.waits(), f.load.line(), f.load.learnedLine(),
				f.load.unknownLine(), f.load.ageLine(), f.queue.exchangeOK, f.queue.exchangeKO)
		}
		fmt.Fprintln(w, "\nOutput tokens per second by workspace (ws-7 floods, ws-8 and ws-9 are quiet), and 429 answers:")
		fmt.Fprintln(w)
		head := "| configuration |"
		for ws := range workspaces {
			head += " " + wsName(ws) + " |"
		}
		fmt.Fprintln(w, head)
		fmt.Fprintln(w, "|---|"+strings.Repeat("---|", workspaces))
		for _, f := range r.fairness {
			row := "| " + f.cfg.name + " |"
			for ws := range workspaces {
				row += fmt.Sprintf(" %.0f", f.c.tokensPerSecond(ws))
				if f.c.refused[ws] > 0 {
					row += fmt.Sprintf(" (%d × 429)", f.c.refused[ws])
				}
				if f.c.failed[ws] > 0 {
					row += fmt.Sprintf(" (%d failed)", f.c.failed[ws])
				}
				row += " |"
			}
			fmt.Fprintln(w, row)
		}
		for _, f := range r.fairness {
			if f.c.firstErr != nil {
				fmt.Fprintf(w, "\nFirst failure, %s: %.200s\n", f.cfg.name, f.c.firstErr)
			}
		}
	}

	if len(r.work) > 0 {
		fmt.Fprintf(w, "\n### Work-conserving: the flooding workspace alone (%d streams), %v after %v of warm-up\n\n", *streams**flood, *workDur, *warmup)
		fmt.Fprintln(w, "| configuration | output tokens/s | requests completed | 429 | servers: running / waiting | waited in the gateway's queue, in the window (dispatched) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		var through, direct float64
		for _, wr := range r.work {
			name := "through the gateway, queueing"
			if wr.direct {
				name = "direct to the servers (round-robin over them)"
				direct = wr.c.tokensPerSecond(flooder)
			} else {
				through = wr.c.tokensPerSecond(flooder)
			}
			fmt.Fprintf(w, "| %s | %.0f | %d | %d | %s | %.0f |\n", name, wr.c.tokensPerSecond(flooder), wr.c.completed[flooder], wr.c.refused[flooder], wr.load.line(), wr.queue.outcomes["dispatched"])
		}
		if through > 0 && direct > 0 {
			checks = append(checks, fmt.Sprintf("the flooder alone gets ≥ 95 %% of the pool's throughput: %.0f tokens/s through the gateway against %.0f direct, %.1f %%: %s", through, direct, 100*through/direct, check(through >= 0.95*direct)))
		}
	}

	if r.priority.sheddableStreams > 0 {
		p := r.priority
		solo := summarise(r.critSolo.outcomes, 0, *soloDur)
		mixed := summarise(p.critical, *warmup, *duration)
		var shedTokens, shedRefused, shedFailed, shedDone int64
		for ws := range sheddableWorkspaces {
			shedTokens += p.c.tokens[ws]
			shedRefused += p.c.refused[ws]
			shedFailed += p.c.failed[ws]
			shedDone += p.c.completed[ws]
		}
		critTPS := p.c.tokensPerSecond(criticalWorkspace)
		shedTPS := float64(shedTokens) / p.c.window.Seconds()
		fmt.Fprintf(w, "\n### Priority: Critical Poisson %g/s (%s, X-Infergate-Priority: Critical), Sheddable %d closed-loop streams (%g× capacity, %s … %s)\n\n",
			*critRate, wsName(criticalWorkspace), p.sheddableStreams, *shedLoad, wsName(0), wsName(sheddableWorkspaces-1))
		fmt.Fprintln(w, "| run | class | requests | TTFT p50 | TTFT p90 | TTFT p99 | p99 / solo | output tokens/s (share) | 429 | errors | mean wait of those that waited in the gateway's queue |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
		fmt.Fprintf(w, "| alone | Critical | %d | %s | %s | %s | 1.0× | | %d | %d%s | %s |\n", solo.n, ms(solo.p50), ms(solo.p90), ms(solo.p99), solo.refused, solo.failed, errNote(solo.firstErr), ms(r.critSolo.queue.meanWait("Critical")))
		rc := ratio(mixed.p99, solo.p99)
		fmt.Fprintf(w, "| mixed | Critical | %d | %s | %s | %s | %.1f× | %.0f (%.1f %%) | %d | %d%s | %s |\n", mixed.n, ms(mixed.p50), ms(mixed.p90), ms(mixed.p99), rc, critTPS, 100*critTPS/(critTPS+shedTPS),
			mixed.refused, mixed.failed, errNote(mixed.firstErr), ms(p.queue.meanWait("Critical")))
		fmt.Fprintf(w, "| mixed | Sheddable | %d completed | | | | | %.0f (%.1f %%) | %d | %d | %s |\n", shedDone, shedTPS, 100*shedTPS/(critTPS+shedTPS), shedRefused, shedFailed, ms(p.queue.meanWait("Sheddable")))
		fmt.Fprintf(w, "\nRequests that waited in the gateway's queue in the window, by class and outcome (dispatched / timeout / full / shed / left): Critical %.0f / %.0f / %.0f / %.0f / %.0f; Sheddable %.0f / %.0f / %.0f / %.0f / %.0f. Servers: running / waiting %s; capacity learned %s.\n",
			p.queue.byClass["Critical/dispatched"], p.queue.byClass["Critical/timeout"], p.queue.byClass["Critical/full"], p.queue.byClass["Critical/shed"], p.queue.byClass["Critical/left"],
			p.queue.byClass["Sheddable/dispatched"], p.queue.byClass["Sheddable/timeout"], p.queue.byClass["Sheddable/full"], p.queue.byClass["Sheddable/shed"], p.queue.byClass["Sheddable/left"],
			p.load.line(), p.load.learnedLine())
		checks = append(checks, fmt.Sprintf("Critical TTFT p99 ≤ 1.5× solo with Sheddable overload: %s against %s, %.1f×: %s; Sheddable: %.0f tokens/s (%.1f %% of what was served), %d × 429",
			ms(mixed.p99), ms(solo.p99), rc, check(rc <= 1.5), shedTPS, 100*shedTPS/(critTPS+shedTPS), shedRefused))
	}

	if o := r.overhead; o.latencies[0] != nil {
		fmt.Fprintf(w, "\n### Overhead: non-streaming requests to fast servers (1 token, no delay), %g/s over three sides interleaved, %v\n\n", *overheadRPS, *overheadDur)
		fmt.Fprintln(w, "| side | requests | p50 | p90 | p99 | errors |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		var p50 [3]time.Duration
		for side := range 3 {
			d := o.latencies[side]
			p50[side] = quantile(d, 0.5)
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %d |\n", overheadSides[side], len(d), us(p50[side]), us(quantile(d, 0.9)), us(quantile(d, 0.99)), o.errors[side])
		}
		if o.firstErr != nil {
			fmt.Fprintf(w, "\nFirst error: %.200s\n", o.firstErr)
		}
		diff := p50[0] - p50[1]
		var spread []string
		for _, part := range o.parts {
			spread = append(spread, signedUs(quantile(part[0], 0.5)-quantile(part[1], 0.5)))
		}
		fmt.Fprintf(w, "\nThe first gateway knew the capacity (%s; %.1f %% of samples without it) and so computed the pool's room and admitted every request to its queue (none waited: %.0f dispatched after a wait); the second, shown no server queueing, never learned it and found the room unbounded. "+
			"Both run the whole gateway and read the same metrics, so the difference of their p50, %s (by fifth of the run: %s), is what the queue and the room cost, within the noise of the machine. "+
			"In process, flow.Queue's Admit, Started, Charge and Wake of one uncontended request take %.0f ns (testing.Benchmark).\n",
			o.learnedLineOf(), 100*o.unknown, o.queue.outcomes["dispatched"], signedUs(diff), strings.Join(spread, ", "), o.admitNs)
		checks = append(checks, fmt.Sprintf("the queue adds ≤ 50 µs p50 when nothing is saturated: %s between the gateways with and without the capacity known (Admit alone: %.0f ns): %s",
			signedUs(diff), o.admitNs, check(diff <= 50*time.Microsecond)))
	}

	if len(checks) > 0 {
		fmt.Fprintln(w, "\n### Targets")
		fmt.Fprintln(w)
		for _, c := range checks {
			fmt.Fprintln(w, "- "+c)
		}
	}
}

func signedUs(d time.Duration) string {
	return fmt.Sprintf("%+.0f µs", float64(d)/float64(time.Microsecond))
}

func (o overheadResult) learnedLineOf() string {
	return "capacity " + serverLoad{learned: o.learned}.learnedLine()
}
