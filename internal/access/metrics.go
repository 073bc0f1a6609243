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

package access

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Label values. None of them comes from a request: tokens and user names are never labels.
const (
	stepAuthentication = "authentication"
	stepAuthorization  = "authorization"

	decisionAllowed = "allowed"
	decisionDenied  = "denied"
	decisionError   = "error"

	cacheToken    = "token"
	cacheDecision = "decision"

	kindTokenReview  = "TokenReview"
	kindAccessReview = "SubjectAccessReview"
)

// tokenCacheRequests is the counter in which k8s.io/apiserver's token cache counts its hits and
// misses (label status), in component-base's legacy registry.
const tokenCacheRequests = "authentication_token_cache_request_total"

type metrics struct {
	decisions *prometheus.CounterVec
	// outage counts answers given from the last known ones, by step (resolved once).
	outage  *prometheus.CounterVec
	outages [2]prometheus.Counter
	// decided holds the counters of decisions by step and decision, resolved once: the
	// request path does not hash label values.
	decided map[[2]string]prometheus.Counter
	reviews *prometheus.CounterVec
	cache   *cacheCollector
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "infergate", "gateway_auth"
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "decisions_total",
			Help: "Authentication and authorization decisions on gateway requests: allowed, denied, or error when the API server could not be asked (answered 503).",
		}, []string{"step", "decision"}),
		outage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "outage_answers_total",
			Help: "Decisions taken from the API server's last answer for a token or a request while it could not be asked (--gateway-auth-outage-grace); they are also counted as allowed or denied.",
		}, []string{"step"}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "reviews_total",
			Help: "TokenReview and SubjectAccessReview requests sent to the API server (cache misses and their retries), by HTTP status code, or error when no answer came.",
		}, []string{"kind", "code"}),
		cache: &cacheCollector{desc: prometheus.NewDesc(ns+"_"+sub+"_cache_requests_total",
			"Lookups in the token cache (TokenReview answers) and the decision cache (SubjectAccessReview answers), by result: hit, or miss when the API server was asked.",
			[]string{"cache", "result"}, nil)},
	}
	m.outages = [2]prometheus.Counter{m.outage.WithLabelValues(stepAuthentication), m.outage.WithLabelValues(stepAuthorization)}
	m.decided = map[[2]string]prometheus.Counter{}
	for _, step := range []string{stepAuthentication, stepAuthorization} {
		for _, d := range []string{decisionAllowed, decisionDenied, decisionError} {
			m.decided[[2]string{step, d}] = m.decisions.WithLabelValues(step, d)
		}
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.decisions, m.outage, m.reviews, m.cache} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) decide(step, decision string) { m.decided[[2]string{step, decision}].Inc() }

// outageAnswer counts an answer taken from the last known ones.
func (m *metrics) outageAnswer(step string) {
	if step == stepAuthentication {
		m.outages[0].Inc()
	} else {
		m.outages[1].Inc()
	}
}

// cachedDecision counts a lookup in the decision cache.
func (m *metrics) cachedDecision(hit bool) {
	if hit {
		m.cache.decisionHits.Add(1)
	} else {
		m.cache.decisionMisses.Add(1)
	}
}

// cacheCollector reports both caches under one name. Decision lookups are counted here, one
// per Authorize. Token lookups are counted by k8s.io/apiserver's token cache itself, the only
// place that knows: a lookup that joins another's review in flight never reaches this package.
type cacheCollector struct {
	desc                         *prometheus.Desc
	decisionHits, decisionMisses atomic.Uint64
}

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.decisionHits.Load()), cacheDecision, "hit")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.decisionMisses.Load()), cacheDecision, "miss")
	hits, misses := 0.0, 0.0
	if families, err := legacyregistry.DefaultGatherer.Gather(); err == nil {
		for _, f := range families {
			if f.GetName() != tokenCacheRequests {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() != "status" {
						continue
					}
					switch l.GetValue() {
					case "hit":
						hits += m.GetCounter().GetValue()
					case "miss":
						misses += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, hits, cacheToken, "hit")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, misses, cacheToken, "miss")
}

// reviewTransport counts the reviews sent to the API server. It never reads the bodies, which
// carry tokens.
type reviewTransport struct {
	next    http.RoundTripper
	kind    string
	metrics *metrics
}

func (t *reviewTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.metrics.reviews.WithLabelValues(t.kind, code).Inc()
	return resp, err
}

// String names the transport in client-go's debug output.
func (t *reviewTransport) String() string { return strings.ToLower(t.kind) + " counter" }
