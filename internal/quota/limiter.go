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

package quota

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of LimiterOptions.
const (
	DefaultTimeout = 250 * time.Millisecond
	// storeBackoff is how long after a failed call the store is left alone: requests meanwhile
	// follow their budgets' failure mode at once instead of each waiting for a timeout.
	storeBackoff = time.Second
)

// Enforcement says where a replica's counters live, as InferenceBudget status reports it.
const (
	EnforcementStore      = "Store"      // one shared store: exact across replicas
	EnforcementInProcess  = "InProcess"  // one replica, counters in its memory: exact
	EnforcementPerReplica = "PerReplica" // several replicas without a store: limit / replicas each
)

// LimiterOptions configure a Limiter.
type LimiterOptions struct {
	// Store is the shared store; nil keeps the counters in this process.
	Store Store
	// Replicas is the number of gateway replicas. Without a Store each enforces its share of
	// every limit (limit / Replicas); with one, the budgets that fail open do so while it
	// cannot be reached. Default 1.
	Replicas int
	// Timeout bounds each call to the store. Default 250ms.
	Timeout time.Duration
	// Now is the clock of the in-process store. Default time.Now.
	Now func() time.Time
	// Registerer receives the limiter's metrics; nil skips them.
	Registerer prometheus.Registerer
}

// Limiter decides requests against their budgets' counters, and follows the budgets' failure
// mode when the store cannot be reached.
type Limiter struct {
	store    Store
	local    *Memory // the counters of this process: the embedded default, or the fallback
	replicas int64
	timeout  time.Duration
	now      func() time.Time
	downTill atomic.Int64  // Unix nanoseconds until which the store is left alone
	pingFail atomic.Bool   // the last health check of the store failed
	settling chan struct{} // a slot per settlement in flight apart from its request
	m        *limiterMetrics
}

// healthInterval is how often Start checks that the store answers, traffic or not.
const healthInterval = 5 * time.Second

// NeedLeaderElection is false: every replica checks its store.
func (l *Limiter) NeedLeaderElection() bool { return false }

// Start checks every few seconds that the store answers, so that infergate_budget_store_up
// tells an outage without traffic too, until ctx is done.
func (l *Limiter) Start(ctx context.Context) error {
	if l.store == nil {
		return nil
	}
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, l.timeout)
		err := l.store.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		l.pingFail.Store(err != nil)
		if err != nil {
			l.m.errors.WithLabelValues("ping").Inc()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// NewLimiter returns a Limiter.
func NewLimiter(o LimiterOptions) (*Limiter, error) {
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Limiter{store: o.Store, local: NewMemory(), replicas: int64(o.Replicas), timeout: o.Timeout, now: o.Now,
		settling: make(chan struct{}, maxSettling)}
	l.local.Now = o.Now
	m, err := newLimiterMetrics(o.Registerer, l)
	if err != nil {
		return nil, err
	}
	l.m = m
	return l, nil
}

// Enforcement says where this replica's counters live.
func (l *Limiter) Enforcement() string {
	switch {
	case l.store != nil:
		return EnforcementStore
	case l.replicas > 1:
		return EnforcementPerReplica
	}
	return EnforcementInProcess
}

// Replicas is the number of replicas that share the limits when the store is not used.
func (l *Limiter) Replicas() int { return int(l.replicas) }

// Reserve decides r and fills d. It returns ErrUnavailable when the store cannot be reached
// and a budget of r fails closed.
func (l *Limiter) Reserve(ctx context.Context, r *Request, d *Decision) error {
	if l.store == nil {
		d.Via = ViaInProcess
		return l.local.Reserve(ctx, r, l.replicas, d)
	}
	if l.now().UnixNano() >= l.downTill.Load() {
		sctx, cancel := context.WithTimeout(ctx, l.timeout)
		start := time.Now()
		err := l.store.Reserve(sctx, r, 1, d)
		cancel()
		l.m.observe("reserve", start, err)
		if err == nil {
			d.Via = ViaStore
			l.pingFail.Store(false)
			return nil
		}
		if ctx.Err() != nil {
			return err // the client went away
		}
		l.downTill.Store(l.now().Add(storeBackoff).UnixNano())
		l.pingFail.Store(true)
	}
	for i := range r.Counters {
		if !r.Counters[i].Budget.FailOpen {
			return ErrUnavailable
		}
	}
	d.Via = ViaFallback
	return l.local.Reserve(ctx, r, l.replicas, d)
}

// Settle replaces what d reserved for r with what the request used: input and output tokens
// as the provider reported them (or as the gateway counted them).
func (l *Limiter) Settle(ctx context.Context, r *Request, d *Decision, input, output int64) {
	if !d.Allowed || len(d.reserved) != len(r.Counters) {
		return
	}
	var keys []string
	var deltas []int64
	for i := range r.Counters {
		c := &r.Counters[i]
		if !c.Limit.Tokens {
			continue
		}
		delta := take(c, input, output) - d.reserved[i]
		if delta == 0 {
			continue
		}
		keys = append(keys, Key(c.Key, d.States[i].Start))
		deltas = append(deltas, delta)
	}
	if len(keys) == 0 {
		return
	}
	if d.Via != ViaStore {
		_ = l.local.Settle(ctx, keys, deltas)
		return
	}
	// The response is over, but its last bytes may still wait in the server's buffer for the
	// handler to return: the store's round trip happens apart, unless too many are pending.
	settle := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
		defer cancel()
		start := time.Now()
		err := l.store.Settle(ctx, keys, deltas)
		l.m.observe("settle", start, err)
	}
	select {
	case l.settling <- struct{}{}:
		go func() {
			defer func() { <-l.settling }()
			settle()
		}()
	default:
		settle()
	}
}

// maxSettling bounds the settlements in flight apart from their requests.
const maxSettling = 1024

// Used returns what the current window of each counter holds, from the store this replica
// uses (the in-process one without a store).
func (l *Limiter) Used(ctx context.Context, counters []Counter) ([]State, error) {
	now := l.now()
	keys := make([]string, len(counters))
	states := make([]State, len(counters))
	for i := range counters {
		c := &counters[i]
		states[i].Start, states[i].End = c.Budget.Window(c.Limit, now)
		keys[i] = Key(c.Key, states[i].Start)
	}
	var used []int64
	var err error
	if l.store != nil {
		ctx, cancel := context.WithTimeout(ctx, l.timeout)
		start := time.Now()
		used, err = l.store.Used(ctx, keys)
		cancel()
		l.m.observe("read", start, err)
	} else {
		used, err = l.local.Used(ctx, keys)
	}
	if err != nil {
		return nil, err
	}
	for i := range states {
		states[i].Used = used[i]
	}
	return states, nil
}

// StoreDown tells whether the store failed its last call or health check.
func (l *Limiter) StoreDown() bool {
	return l.store != nil && (l.pingFail.Load() || l.now().UnixNano() < l.downTill.Load())
}

type limiterMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

func newLimiterMetrics(reg prometheus.Registerer, l *Limiter) (*limiterMetrics, error) {
	m := &limiterMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "infergate", Subsystem: "budget", Name: "store_duration_seconds",
			Help:    "Time of calls to the budget store, by operation: reserve (one per budgeted request), settle, read.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "infergate", Subsystem: "budget", Name: "store_errors_total",
			Help: "Calls to the budget store that failed, by operation (reserve, settle, read, ping: the health check every 5 seconds).",
		}, []string{"operation"}),
	}
	for _, op := range []string{"reserve", "settle", "read", "ping"} {
		m.errors.WithLabelValues(op) // exported at 0 before the first failure, so rates start right
	}
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "infergate", Subsystem: "budget", Name: "store_up",
		Help: "1 while the budget store answers (or none is configured), 0 while budgets follow their failure mode.",
	}, func() float64 {
		if l.StoreDown() {
			return 0
		}
		return 1
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.duration, m.errors, up} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *limiterMetrics) observe(op string, start time.Time, err error) {
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}
