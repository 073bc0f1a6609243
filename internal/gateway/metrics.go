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

package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/routing"
)

// metrics are the gateway's Prometheus metrics. Label values come from the routing table
// (never from unvalidated client input), so their number is bounded by the cluster's objects.
type metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	ttfb             *prometheus.HistogramVec
	ttft             *prometheus.HistogramVec
	promptTokens     *prometheus.CounterVec
	completionTokens *prometheus.CounterVec
	retries          *prometheus.CounterVec
	ejections        *prometheus.CounterVec
	// Budgets (limits.go): decisions, refusals by budget and limit, and usage settled.
	budgetDecisions *prometheus.CounterVec
	budgetRefusals  *prometheus.CounterVec
	budgetUsed      *prometheus.CounterVec
	// The queue of saturated pools (queue.go): requests waiting, how their wait ended, how long.
	waiting       *prometheus.GaugeVec
	queueOutcomes *prometheus.CounterVec
	queueWait     *prometheus.HistogramVec
	// Virtual models (target.go): requests by the target that answered them, and fallbacks
	// by the target left and why.
	targetRequests *prometheus.CounterVec
	fallbacks      *prometheus.CounterVec
	// picks counts how providers were chosen, resolved ahead for every balancing and choice.
	picks [routing.Failover + 1][routing.AllEjected + 1]prometheus.Counter
}

// picked counts one choice of a provider.
func (m *metrics) picked(b routing.Balancing, c routing.Choice) {
	if int(b) < len(m.picks) && int(c) < len(m.picks[b]) && m.picks[b][c] != nil {
		m.picks[b][c].Inc()
	}
}

// fellBack counts a request that left target for the next one of virtual model entity.
func (m *metrics) fellBack(ws, entity, target, reason string) {
	m.fallbacks.WithLabelValues(ws, entity, target, reason).Inc()
}

// choiceLabel is the label value of a Choice.
func choiceLabel(c routing.Choice) string {
	switch c {
	case routing.Preferred:
		return "preferred"
	case routing.Spilled:
		return "spilled"
	case routing.AllEjected:
		return "all_ejected"
	}
	return "balanced"
}

func newMetrics(reg prometheus.Registerer, store *routing.Store, now func() time.Time) (*metrics, error) {
	const ns, sub = "infergate", "gateway"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests answered by the gateway, by workspace, model entity, provider, route and HTTP status code.",
		}, []string{"workspace", "entity", "provider", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help:    "Time from the request's arrival to the last byte of the response, streams included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"workspace", "entity", "provider", "route"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "time_to_first_byte_seconds",
			Help:    "Time from the request's arrival to the upstream's response headers (for streams, about the time to the first token).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"workspace", "entity", "provider", "route"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "time_to_first_token_seconds",
			Help:    "Time from the request's arrival to the first event of a model entity's event stream (OpenTelemetry's gen_ai.server.time_to_first_token, seen at the gateway).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10, 30, 60},
		}, []string{"workspace", "entity", "provider"}),
		promptTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "prompt_tokens_total",
			Help: "Prompt tokens reported in response usage, streams included.",
		}, []string{"workspace", "entity", "provider"}),
		completionTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "completion_tokens_total",
			Help: "Completion tokens reported in response usage, streams included.",
		}, []string{"workspace", "entity", "provider"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "upstream_retries_total",
			Help: "Attempts that failed before any byte reached the client and were retried on another provider, by the provider that failed and why.",
		}, []string{"workspace", "entity", "provider", "reason"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "provider_ejections_total",
			Help: "Times a provider was taken out of rotation for a cool-down after failures or a Retry-After.",
		}, []string{"workspace", "provider"}),
		budgetDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "budget", Name: "decisions_total",
			Help: "Requests decided against InferenceBudgets, by workspace, decision (allowed; clamped: allowed with a lower output cap; refused: 429; unavailable: 503, the store down and a budget failing closed) " +
				"and where (store; in_process: a replica without a store; fallback: this replica's share while the store is down).",
		}, []string{"workspace", "decision", "via"}),
		budgetRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "budget", Name: "refusals_total",
			Help: "Requests refused with 429, by workspace, the InferenceBudget (namespace/name) and the limit that refused them.",
		}, []string{"workspace", "budget", "limit"}),
		budgetUsed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: "budget", Name: "used_total",
			Help: "Requests and tokens (as settled: the provider's usage, or what was sent) counted by each InferenceBudget, by the request's workspace, the budget, the caller (budgets counted per caller; empty otherwise) and unit.",
		}, []string{"workspace", "budget", "caller", "unit"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "queue_requests",
			Help: "Requests this replica holds while every provider of their model is saturated, by workspace and priority class.",
		}, []string{"workspace", "class"}),
		queueOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "queue_outcomes_total",
			Help: "Requests that met a saturated pool, by workspace, priority class and outcome: dispatched (a slot freed), full (refused 429: the queue held spec.queue.maxLength, none of a lower class), " +
				"shed (refused 429: a higher class took its place), timeout (refused 429 after spec.queue.maxTime) or left (the client went away).",
		}, []string{"workspace", "class", "outcome"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "queue_wait_seconds",
			Help:    "Time requests waited in the gateway's queue for a saturated pool, however the wait ended, by workspace and priority class.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"workspace", "class"}),
		targetRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "target_requests_total",
			Help: "Requests for virtual models, by workspace, the virtual model (entity), the target (namespace/name) that answered them and HTTP status code.",
		}, []string{"workspace", "entity", "target", "code"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "fallbacks_total",
			Help: "Requests for virtual models that left a target for the next one before any byte reached the client, by workspace, virtual model, the target left and why: " +
				"unroutable (every provider ejected or tried), saturated (every provider full), context_length (the prompt exceeds the model's context), stall (no first bytes within timeToFirstToken), or the failure of its last attempt (429, 503, connect, ...).",
		}, []string{"workspace", "entity", "target", "reason"}),
	}
	picks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "provider_picks_total",
		Help: "Providers chosen for attempts on the entity routes, by the entity's balancing and how: " +
			"preferred (the provider ranked first for the prompt prefix), spilled (another, since that one was overloaded), " +
			"balanced (by the policy, no prefix involved) or all_ejected (every provider ejected: the one that failed longest ago).",
	}, []string{"balancing", "choice"})
	for b := routing.CacheAware; b <= routing.Failover; b++ {
		for c := routing.ByPolicy; c <= routing.AllEjected; c++ {
			if (c == routing.Preferred || c == routing.Spilled) && b != routing.CacheAware {
				continue
			}
			m.picks[b][c] = picks.WithLabelValues(b.String(), choiceLabel(c))
		}
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.ttfb, m.ttft, m.promptTokens, m.completionTokens, m.retries, m.ejections, m.budgetDecisions, m.budgetRefusals, m.budgetUsed, m.waiting, m.queueOutcomes, m.queueWait, m.targetRequests, m.fallbacks, picks, &healthCollector{store: store, now: now}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// statusCodes holds the label value of every status code, so counting allocates nothing.
var statusCodes = func() [600]string {
	var s [600]string
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func codeLabel(status int) string {
	if status >= 0 && status < len(statusCodes) {
		return statusCodes[status]
	}
	return strconv.Itoa(status)
}

var (
	inFlightDesc = prometheus.NewDesc("infergate_gateway_requests_in_flight",
		"Requests in flight to each provider.", []string{"workspace", "provider"}, nil)
	ejectedDesc = prometheus.NewDesc("infergate_gateway_provider_ejected",
		"1 while a provider is out of rotation for a cool-down, else 0.", []string{"workspace", "provider"}, nil)
	loadDesc = prometheus.NewDesc("infergate_gateway_provider_load",
		"Requests this replica estimates each provider's model server has: its last fresh report of requests running and waiting, corrected by this replica's requests since; else this replica's requests in flight.",
		[]string{"workspace", "provider"}, nil)
	capacityDesc = prometheus.NewDesc("infergate_gateway_provider_capacity",
		"The most requests each provider's model server runs at once, as it reports it or as it was seen running while others waited (absent while unknown).",
		[]string{"workspace", "provider"}, nil)
	ttftDesc = prometheus.NewDesc("infergate_gateway_provider_time_to_first_token_seconds",
		"Recent time to first token of streams through this replica (EWMA; absent without a sample in the last 30s).", []string{"workspace", "provider"}, nil)
	tpotDesc = prometheus.NewDesc("infergate_gateway_provider_time_per_output_token_seconds",
		"Recent time per output token of streams through this replica (EWMA; absent without a sample in the last 30s).", []string{"workspace", "provider"}, nil)
	streamsDesc = prometheus.NewDesc("infergate_gateway_streams_open",
		"Event streams from each provider being sent to clients now.", []string{"workspace", "provider"}, nil)
	providerReadyDesc = prometheus.NewDesc("infergate_gateway_provider_ready",
		"1 while a provider's Ready condition is True in the routing table (its last probe succeeded), else 0.", []string{"workspace", "provider"}, nil)
	entityProvidersDesc = prometheus.NewDesc("infergate_gateway_entity_ready_providers",
		"Ready providers each model entity routes to in the routing table (a virtual model: those of its targets); 0 means its requests get 503.", []string{"workspace", "entity"}, nil)
	prefixBlocksDesc = prometheus.NewDesc("infergate_gateway_prefix_index_blocks",
		"Prompt blocks in each provider's prefix index: the blocks of the prompts this replica sent it, which its server probably holds (CacheAware; absent while empty).",
		[]string{"workspace", "provider"}, nil)
	prefixBytesDesc = prometheus.NewDesc("infergate_gateway_prefix_index_bytes",
		"Estimated memory of each provider's prefix index, in bytes (absent while empty).", []string{"workspace", "provider"}, nil)
	routableDesc = prometheus.NewDesc("infergate_gateway_routable_entities",
		"Model entities with at least one ready provider in the current routing table.", nil, nil)
)

// healthCollector reads the live provider state from the current routing table at scrape
// time, so the request path pays nothing for these gauges.
type healthCollector struct {
	store *routing.Store
	now   func() time.Time
}

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{inFlightDesc, streamsDesc, ejectedDesc, providerReadyDesc, loadDesc, capacityDesc, ttftDesc, tpotDesc, prefixBlocksDesc, prefixBytesDesc, entityProvidersDesc, routableDesc} {
		ch <- d
	}
}

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	table := c.store.Load()
	now := c.now()
	table.EachProvider(func(p *routing.Provider) {
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(p.Health.InFlight()), p.Workspace, p.Name)
		ch <- prometheus.MustNewConstMetric(streamsDesc, prometheus.GaugeValue, float64(p.Health.Streams()), p.Workspace, p.Name)
		ch <- prometheus.MustNewConstMetric(providerReadyDesc, prometheus.GaugeValue, gaugeBool(p.Ready), p.Workspace, p.Name)
		ch <- prometheus.MustNewConstMetric(ejectedDesc, prometheus.GaugeValue, gaugeBool(p.Health.Ejected(now)), p.Workspace, p.Name)
		sig := p.Health.Signals(now, p.StaleAfter())
		ch <- prometheus.MustNewConstMetric(loadDesc, prometheus.GaugeValue, float64(sig.Load), p.Workspace, p.Name)
		if sig.Capacity > 0 {
			ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(sig.Capacity), p.Workspace, p.Name)
		}
		if sig.TTFT > 0 {
			ch <- prometheus.MustNewConstMetric(ttftDesc, prometheus.GaugeValue, sig.TTFT.Seconds(), p.Workspace, p.Name)
		}
		if sig.TPOT > 0 {
			ch <- prometheus.MustNewConstMetric(tpotDesc, prometheus.GaugeValue, sig.TPOT.Seconds(), p.Workspace, p.Name)
		}
		if n := p.Prefixes.Len(); n > 0 {
			ch <- prometheus.MustNewConstMetric(prefixBlocksDesc, prometheus.GaugeValue, float64(n), p.Workspace, p.Name)
			ch <- prometheus.MustNewConstMetric(prefixBytesDesc, prometheus.GaugeValue, float64(p.Prefixes.Bytes()), p.Workspace, p.Name)
		}
	})
	table.EachEntity(func(e *routing.Entity) {
		ch <- prometheus.MustNewConstMetric(entityProvidersDesc, prometheus.GaugeValue, float64(e.ReadyProviders()), e.Workspace, e.Name)
	})
	ch <- prometheus.MustNewConstMetric(routableDesc, prometheus.GaugeValue, float64(table.Routable()))
}

// gaugeBool is a gauge's value for a yes or no: 1 or 0.
func gaugeBool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// registerBudget exports what the memory budget holds, read at scrape time.
func registerBudget(reg prometheus.Registerer, b *budget) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "infergate", Subsystem: "gateway", Name: "buffered_bytes",
		Help: "Bytes of request bodies and JSON responses the gateway holds in memory now, out of its budget (--gateway-buffer-bytes).",
	}, func() float64 { return float64(b.used.Load()) }))
}

// queued counts how a request's meeting with a saturated pool ended, and how long it waited.
func (m *metrics) queued(ws string, c flow.Class, outcome string, waited time.Duration) {
	m.queueOutcomes.WithLabelValues(ws, c.String(), outcome).Inc()
	if outcome != "full" {
		m.queueWait.WithLabelValues(ws, c.String()).Observe(waited.Seconds())
	}
}
