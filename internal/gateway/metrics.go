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

	"github.com/infergate/infergate/internal/routing"
)

// metrics are the gateway's Prometheus metrics. Label values come from the routing table
// (never from unvalidated client input), so their number is bounded by the cluster's objects.
type metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	ttfb             *prometheus.HistogramVec
	promptTokens     *prometheus.CounterVec
	completionTokens *prometheus.CounterVec
	retries          *prometheus.CounterVec
	ejections        *prometheus.CounterVec
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
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.ttfb, m.promptTokens, m.completionTokens, m.retries, m.ejections, &healthCollector{store: store, now: now}} {
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
	ch <- inFlightDesc
	ch <- ejectedDesc
	ch <- routableDesc
}

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	table := c.store.Load()
	now := c.now()
	table.EachProvider(func(p *routing.Provider) {
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(p.Health.InFlight()), p.Workspace, p.Name)
		ejected := 0.0
		if p.Health.Ejected(now) {
			ejected = 1
		}
		ch <- prometheus.MustNewConstMetric(ejectedDesc, prometheus.GaugeValue, ejected, p.Workspace, p.Name)
	})
	ch <- prometheus.MustNewConstMetric(routableDesc, prometheus.GaugeValue, float64(table.Routable()))
}
