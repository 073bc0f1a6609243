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

package scrape

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/routing"
)

// maxBytes bounds a metrics response: what a provider's server sends cannot grow the
// manager's memory without bound.
const maxBytes = 8 << 20

// Target is one metrics endpoint.
type Target struct {
	URL string
	// AuthHeader and AuthValue carry the provider's API key, if it has one.
	AuthHeader, AuthValue string
	// HopID is sent in egress.HopHeader, as on every request of the gateway.
	HopID string
}

// NewClient returns the HTTP client of scrapes that connects as egress.Default(allowLocal)
// allows: NewClientFor with the built-in rules.
func NewClient(allowLocal bool) *http.Client { return NewClientFor(egress.Default(allowLocal)) }

// NewClientFor returns the HTTP client of scrapes: it never follows redirects (the key must not
// travel elsewhere) and connects, directly or through a proxy, only where policy allows, as the
// gateway and the probes do.
func NewClientFor(policy *egress.Policy) *http.Client {
	tr := policy.Transport(5 * time.Second)
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Fetch reads one target's metrics and returns the load they report and their engine.
func Fetch(ctx context.Context, c *http.Client, t Target) (routing.EngineReport, Engine, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return routing.EngineReport{}, Engine{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	req.Header.Set("User-Agent", "infergate-scrape")
	if t.AuthHeader != "" {
		req.Header.Set(t.AuthHeader, t.AuthValue)
	}
	if t.HopID != "" {
		req.Header.Set(egress.HopHeader, t.HopID) // last: no Provider setting may replace it
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // the url.Error repeats the URL
		}
		return routing.EngineReport{}, Engine{}, fmt.Errorf("GET %s: %w", t.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return routing.EngineReport{}, Engine{}, fmt.Errorf("GET %s answered %s", t.URL, resp.Status)
	}
	r, e, err := Parse(http.MaxBytesReader(nil, resp.Body, maxBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return r, e, fmt.Errorf("GET %s: the metrics are larger than %d MiB", t.URL, maxBytes>>20)
		}
		return r, e, fmt.Errorf("GET %s: %w", t.URL, err)
	}
	return r, e, nil
}

// Scraper reads, on each one's interval, the metrics of every ready provider of the current
// routing table that has them (spec.metrics), and records what they report in the provider's
// Health, where the picker reads it. A failing target keeps being tried; its last report goes
// stale, and the picker falls back to this replica's own signals. It runs on every replica.
type Scraper struct {
	// Store holds the routing table whose providers are scraped. Required.
	Store *routing.Store
	// Client sends the scrapes. Default NewClient(false).
	Client *http.Client
	// HopID is sent in egress.HopHeader.
	HopID string
	// Registerer receives the scrape metrics; nil skips them.
	Registerer prometheus.Registerer
	// Log receives changes of a target's state, never keys.
	Log logr.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time

	mu      sync.Mutex
	targets map[*routing.Health]*target
}

// target is the scrape state of one provider. Providers are known by their Health, which
// survives table rebuilds while the provider's URL stays the same.
type target struct {
	provider *routing.Provider // as in the latest table
	next     time.Time
	busy     bool
	seen     bool   // in the latest table
	up       bool   // the last scrape succeeded
	tried    bool   // a scrape has finished
	engine   string // of the last successful scrape
	errors   uint64
	lastRead time.Time
}

// tick is how often the scraper looks for scrapes that are due.
const tick = 50 * time.Millisecond

// NeedLeaderElection is false: every replica routes, so every replica scrapes.
func (s *Scraper) NeedLeaderElection() bool { return false }

// Start scrapes until ctx is done.
func (s *Scraper) Start(ctx context.Context) error {
	if s.Store == nil {
		return errors.New("scrape: Store is required")
	}
	if s.Client == nil {
		s.Client = NewClient(false)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	s.mu.Lock()
	s.targets = map[*routing.Health]*target{}
	s.mu.Unlock()
	if s.Registerer != nil {
		if err := s.Registerer.Register(&collector{s: s}); err != nil {
			return err
		}
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		s.sync(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sync starts the scrapes that are due and forgets the providers that are gone.
func (s *Scraper) sync(ctx context.Context) {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.targets {
		t.seen = false
	}
	s.Store.Load().EachProvider(func(p *routing.Provider) {
		if p.Metrics == nil || !p.Ready || p.MissingCredentials {
			return
		}
		t := s.targets[p.Health]
		if t == nil {
			// The first scrape comes at a random point of the first interval, so that replicas
			// and providers spread out.
			t = &target{next: now.Add(rand.N(p.Metrics.Interval))}
			s.targets[p.Health] = t
		}
		t.provider, t.seen = p, true
		if t.busy || now.Before(t.next) {
			return
		}
		t.busy, t.next = true, now.Add(p.Metrics.Interval)
		go s.scrape(ctx, t, p)
	})
	for h, t := range s.targets {
		if !t.seen && !t.busy {
			delete(s.targets, h)
		}
	}
}

func (s *Scraper) scrape(ctx context.Context, t *target, p *routing.Provider) {
	ctx, cancel := context.WithTimeout(ctx, min(max(p.Metrics.Interval, time.Second), 5*time.Second))
	defer cancel()
	report, engine, err := Fetch(ctx, s.Client, Target{URL: p.Metrics.URL, AuthHeader: p.AuthHeader, AuthValue: p.AuthValue, HopID: s.HopID})
	now := s.Now()
	if err == nil {
		p.Health.Report(now, report)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.busy = false
	wasUp, first := t.up, !t.tried
	t.tried, t.up = true, err == nil
	if err != nil {
		t.errors++
		if (wasUp || first) && !errors.Is(ctx.Err(), context.Canceled) {
			s.Log.Info("cannot read a provider's metrics; it is balanced on this replica's own signals until they come back",
				"provider", p.ID, "error", err.Error())
		}
		return
	}
	t.engine, t.lastRead = engine.Name, now
	if !wasUp {
		s.Log.Info("reading a provider's metrics", "provider", p.ID, "engine", engine.Name, "url", p.Metrics.URL)
	}
}

var (
	waitingDesc = prometheus.NewDesc("infergate_provider_requests_waiting",
		"Requests the provider's model server queues, as its metrics last said (absent while they are stale).", []string{"workspace", "provider"}, nil)
	runningDesc = prometheus.NewDesc("infergate_provider_requests_running",
		"Requests the provider's model server runs, as its metrics last said (absent while they are stale).", []string{"workspace", "provider"}, nil)
	kvDesc = prometheus.NewDesc("infergate_provider_kv_cache_usage_ratio",
		"Fraction of the provider's KV cache in use, 0 to 1, as its metrics last said (absent while they are stale).", []string{"workspace", "provider"}, nil)
	upDesc = prometheus.NewDesc("infergate_provider_metrics_up",
		"1 when the last read of the provider's metrics succeeded, else 0.", []string{"workspace", "provider", "engine"}, nil)
	errorsDesc = prometheus.NewDesc("infergate_provider_metrics_errors_total",
		"Reads of the provider's metrics that failed.", []string{"workspace", "provider"}, nil)
	lastReadDesc = prometheus.NewDesc("infergate_provider_metrics_last_read_timestamp_seconds",
		"When the provider's metrics were last read, in seconds since the epoch.", []string{"workspace", "provider"}, nil)
)

// collector exposes the scrape state at scrape time: the request path pays nothing for it.
type collector struct{ s *Scraper }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{waitingDesc, runningDesc, kvDesc, upDesc, errorsDesc, lastReadDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, t := range s.targets {
		if !t.tried {
			continue
		}
		p := t.provider
		up := 0.0
		if t.up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, p.Workspace, p.Name, t.engine)
		ch <- prometheus.MustNewConstMetric(errorsDesc, prometheus.CounterValue, float64(t.errors), p.Workspace, p.Name)
		if t.lastRead.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(lastReadDesc, prometheus.GaugeValue, float64(t.lastRead.UnixNano())/1e9, p.Workspace, p.Name)
		r, at := h.LastReport()
		if now.Sub(at) > p.StaleAfter() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(waitingDesc, prometheus.GaugeValue, r.Waiting, p.Workspace, p.Name)
		ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, r.Running, p.Workspace, p.Name)
		if r.HasKVCacheUsage {
			ch <- prometheus.MustNewConstMetric(kvDesc, prometheus.GaugeValue, r.KVCacheUsage, p.Workspace, p.Name)
		}
	}
}
