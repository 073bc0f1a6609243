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

// The fallback phase: a virtual model whose first target is a self-hosted pool driven past its
// capacity and whose second is a hosted API, against the self-hosted pool alone at the same
// load and at half its capacity.

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
)

var (
	overload   = flag.Float64("overload", 1.2, "offered load of the fallback phase, as a share of the self-hosted pool's capacity")
	hostedPool = flag.String("hosted", "16,16", "max-num-seqs of each simulated server of the hosted API (fallback phase)")
)

// unsaturatedLoad is the load of the fallback phase's reference: the self-hosted pool at half
// its capacity, whose TTFT p99 the others are held to.
const unsaturatedLoad = 0.5

// The entities of the fallback phase. The self-hosted servers are providers of the team
// workspace; the hosted API's servers are providers of the system workspace, without
// metrics, as a hosted API publishes none.
const (
	teamWorkspace, hostedWorkspace = "team", "system"
	virtualModel                   = "chat"
	selfHosted, hosted             = "self-hosted", "nvidia-build"
)

// fallbackConfig is one configuration of the fallback phase.
type fallbackConfig struct {
	name string
	// virtual: the clients name team/chat, whose targets are team/self-hosted and then
	// system/nvidia-build; else team/self-hosted.
	virtual bool
	// reference: at unsaturatedLoad rather than -overload.
	reference bool
}

var fallbackConfigs = []fallbackConfig{
	{name: "with fallback: team/chat, self-hosted then nvidia-build", virtual: true},
	{name: "without fallback: team/self-hosted"},
	{name: "unsaturated reference: team/self-hosted", reference: true},
}

// fallbackResult is one configuration's outcomes in the fallback phase, and what its gateway
// counted in the measured window.
type fallbackResult struct {
	config fallbackConfig
	share  float64 // offered load, of the self-hosted pool's capacity
	rate   float64 // requests per second
	result result
	counts counts // in the measured window
	// learned is the capacity the gateway learned of the self-hosted servers, in sequence slots.
	learned int
}

// fallbackPhase is the fallback phase's results.
type fallbackPhase struct {
	pool, hosted []int
	capacity     float64 // of the self-hosted pool, requests per second
	results      []fallbackResult
}

// runFallback runs the fallback phase's configurations at once, each with pools of its own:
// independent prompts at -overload of the self-hosted pool's capacity (the reference at
// unsaturatedLoad), the same arrivals for the two at -overload.
func runFallback(seqs, hostedSeqs, weights []int) (*fallbackPhase, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cleanup []func()
	defer func() {
		for _, f := range cleanup {
			f()
		}
	}()
	capacity := poolCapacity(seqs, independent(0, 0, *seed).meanPromptTokens())
	ph := &fallbackPhase{pool: seqs, hosted: hostedSeqs, capacity: capacity}
	gateways := make([]gatewayServer, len(fallbackConfigs))
	workloads := make([]*workload, len(fallbackConfigs))
	for i, cfg := range fallbackConfigs {
		share := *overload
		if cfg.reference {
			share = unsaturatedLoad
		}
		workloads[i] = independent(share*capacity, *duration, *seed)
		ph.results = append(ph.results, fallbackResult{config: cfg, share: share, rate: share * capacity})
		fmt.Fprintf(os.Stderr, "fallback phase, %s: %.0f%% of capacity, %.1f requests/s, %d requests\n", cfg.name, share*100, share*capacity, len(workloads[i].arrivals))

		self, stop, err := startPool(seqs, selfHosted)
		cleanup = append(cleanup, stop)
		if err != nil {
			return nil, err
		}
		var api []string
		if cfg.virtual {
			api, stop, err = startPool(hostedSeqs, hosted)
			cleanup = append(cleanup, stop)
			if err != nil {
				return nil, err
			}
		}
		gw, err := serve(ctx, fallbackSpec(self, api, weights), true)
		cleanup = append(cleanup, gw.stop)
		if err != nil {
			return nil, err
		}
		gateways[i] = gw
	}
	// Let the scrapers read every server once.
	time.Sleep(2*(*interval) + 200*time.Millisecond)

	start := time.Now().Add(100 * time.Millisecond)
	var wg sync.WaitGroup
	for i, cfg := range fallbackConfigs {
		model := teamWorkspace + "/" + selfHosted
		if cfg.virtual {
			model = teamWorkspace + "/" + virtualModel
		}
		gw, res := gateways[i], &ph.results[i]
		url := gw.url + gateway.Prefix + teamWorkspace + "/openai/-/v1/chat/completions"
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The gateway's counters when the measured window opens, and when the last answer
			// has come.
			opened := make(chan counts, 1)
			go func() {
				time.Sleep(time.Until(start.Add(*warmup)))
				opened <- gather(gw.reg)
			}()
			c := config{name: cfg.name, balancing: routing.CacheAware, replicas: 1, model: model}
			res.result.config = c
			res.result.outcomes, res.result.tokens = drive(ctx, workloads[i], c, []string{url}, seqs, start)
			res.counts = gather(gw.reg).minus(<-opened)
			res.learned = learned(gw.store)
		}()
	}
	wg.Wait()
	return ph, nil
}

// fallbackSpec is the routing table of a fallback configuration: team/self-hosted over the
// self servers (CacheAware, their metrics read), and, with api servers, system/nvidia-build
// over those (no metrics) and the virtual model team/chat over the two, in that order.
func fallbackSpec(self, api []string, weights []int) routing.Spec {
	now := time.Now()
	s := routing.Spec{Entities: []routing.EntitySpec{{Workspace: teamWorkspace, Name: selfHosted, Created: now}}}
	for i, u := range self {
		name := "gpu-" + string(rune('a'+i))
		s.Providers = append(s.Providers, routing.ProviderSpec{Workspace: teamWorkspace, Name: name, BaseURL: u, Ready: true,
			Metrics: &routing.MetricsSpec{URL: u + "/metrics", Interval: *interval}})
		s.Entities[0].Backends = append(s.Entities[0].Backends, routing.BackendSpec{Workspace: teamWorkspace, Name: name, ServedModel: served, Weight: weights[i]})
	}
	if api == nil {
		return s
	}
	nvidia := routing.EntitySpec{Workspace: hostedWorkspace, Name: hosted, Created: now}
	for i, u := range api {
		name := hosted + "-" + string(rune('a'+i))
		s.Providers = append(s.Providers, routing.ProviderSpec{Workspace: hostedWorkspace, Name: name, BaseURL: u, Ready: true})
		nvidia.Backends = append(nvidia.Backends, routing.BackendSpec{Workspace: hostedWorkspace, Name: name, ServedModel: served})
	}
	s.Entities = append(s.Entities, nvidia, routing.EntitySpec{Workspace: teamWorkspace, Name: virtualModel, Created: now,
		Targets: []routing.TargetSpec{
			{Workspace: teamWorkspace, Name: selfHosted, Weight: 1, Order: 0},
			{Workspace: hostedWorkspace, Name: hosted, Weight: 1, Order: 1},
		}})
	return s
}

// counts are what a gateway counted in the fallback phase: requests for the virtual model by
// the target that answered (infergate_gateway_target_requests_total), fallbacks by reason
// (infergate_gateway_fallbacks_total), and the queue's outcomes
// (infergate_gateway_queue_outcomes_total).
type counts struct {
	targets, fallbacks, queue map[string]float64
}

// gather reads the counts of the gateway whose metrics are reg.
func gather(reg *prometheus.Registry) counts {
	return counts{
		targets:   counters(reg, "infergate_gateway_target_requests_total", "target"),
		fallbacks: counters(reg, "infergate_gateway_fallbacks_total", "reason"),
		queue:     counters(reg, "infergate_gateway_queue_outcomes_total", "outcome"),
	}
}

// minus is c less what d counted.
func (c counts) minus(d counts) counts {
	return counts{targets: minus(c.targets, d.targets), fallbacks: minus(c.fallbacks, d.fallbacks), queue: minus(c.queue, d.queue)}
}

// counters sums the counter family name of reg by the values of its label.
func counters(reg *prometheus.Registry, name, label string) map[string]float64 {
	out := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// minus is a less what b counted.
func minus(a, b map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(a))
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// learned is the capacity the gateway learned of the self-hosted servers: the sum of their
// max-num-seqs as it knows them.
func learned(store *routing.Store) int {
	n := 0
	store.Load().EachProvider(func(p *routing.Provider) {
		if p.Workspace == teamWorkspace {
			n += int(p.Health.Capacity())
		}
	})
	return n
}

// write writes the fallback phase as Markdown and returns its targets checked against the
// unsaturated reference: with fallback, no client-visible error and a TTFT p99 within 1.5
// times the reference's.
func (ph *fallbackPhase) write(w io.Writer) []string {
	var over fallbackResult
	for _, r := range ph.results {
		if !r.config.reference {
			over = r
		}
	}
	fmt.Fprintf(w, "\n### Fallback to a hosted API: independent prompts at %.0f %% of the self-hosted pool's capacity (%.1f requests/s; capacity %.1f/s)\n\n",
		over.share*100, over.rate, ph.capacity)
	fmt.Fprintf(w, "team/self-hosted: %d simulated servers with max-num-seqs %s, CacheAware, metrics read every %v. system/nvidia-build: %d simulated servers with max-num-seqs %s, no metrics. "+
		"team/chat: targets team/self-hosted (order 0), system/nvidia-build (order 1). Fallback share: requests answered by system/nvidia-build, over those answered by either.\n\n",
		len(ph.pool), list(ph.pool), *interval, len(ph.hosted), list(ph.hosted))
	fmt.Fprintln(w, "| configuration | load | requests | errors | TTFT p50 | TTFT p99 | E2E p99 | to nvidia-build | TTFT p99 / unsaturated p99 |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	var ref figures
	for _, r := range ph.results {
		if r.config.reference {
			ref = summarise(r.result)
		}
	}
	var checks []string
	for _, r := range ph.results {
		f := summarise(r.result)
		errs := fmt.Sprint(f.errors)
		if f.firstError != nil {
			msg, _, _ := strings.Cut(f.firstError.Error(), ": {") // the status, without the body
			errs += fmt.Sprintf(" (%.60s)", msg)
		}
		share := "–"
		if r.config.virtual {
			to, total := r.counts.targets[hostedWorkspace+"/"+hosted], 0.0
			for _, v := range r.counts.targets {
				total += v
			}
			if total > 0 {
				share = fmt.Sprintf("%.0f %%", 100*to/total)
			}
		}
		ratio := float64(f.ttftP99) / float64(ref.ttftP99)
		fmt.Fprintf(w, "| %s | %.0f %% | %d | %s | %s | %s | %s | %s | %.2f× |\n",
			r.config.name, r.share*100, f.n, errs, ms(f.ttftP50), ms(f.ttftP99), ms(f.e2eP99), share, ratio)
		if r.config.virtual {
			checks = append(checks,
				fmt.Sprintf("fallback at %.0f %%: client-visible errors %d (target 0): %s", r.share*100, f.errors, met(f.errors == 0)),
				fmt.Sprintf("fallback at %.0f %%: TTFT p99 %.2f× the unsaturated p99 (target ≤ 1.5): %s", r.share*100, ratio, met(ratio <= 1.5)))
		} else if !r.config.reference {
			checks = append(checks, fmt.Sprintf("fallback at %.0f %%: without fallback, %d errors and TTFT p99 %.2f× the unsaturated p99 (reference)", r.share*100, f.errors, ratio))
		}
	}
	fmt.Fprintln(w)
	for _, r := range ph.results {
		fmt.Fprintf(w, "- %s: fallbacks %s; gateway queue %s; capacity learned of the self-hosted servers %d of %d slots.\n",
			r.config.name, tally(r.counts.fallbacks), tally(r.counts.queue), r.learned, sum(ph.pool))
		if r.config.virtual {
			self, api := answeredBy(r.result, selfHosted), answeredBy(r.result, hosted)
			fmt.Fprintf(w, "  Answered by team/self-hosted: %d, TTFT p50 %s, p99 %s; by system/nvidia-build: %d, TTFT p50 %s, p99 %s.\n",
				self.n, ms(self.ttftP50), ms(self.ttftP99), api.n, ms(api.ttftP50), ms(api.ttftP99))
		}
	}
	return checks
}

// answeredBy summarises the requests of res that the servers named name answered: each
// answer begins with its server's name.
func answeredBy(res result, name string) figures {
	var by result
	for _, o := range res.outcomes {
		if o.err == nil && strings.HasPrefix(o.reply, "Hello from "+name+".") {
			by.outcomes = append(by.outcomes, o)
		}
	}
	return summarise(by)
}

// tally lists a count map as "key n, key n", by key; "none" when empty.
func tally(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// sum is the sum of v.
func sum(v []int) int {
	n := 0
	for _, x := range v {
		n += x
	}
	return n
}
