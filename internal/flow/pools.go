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

package flow

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Exchanger shares the counters of a pool between replicas: it adds this replica's deltas to
// the totals every replica adds to, and returns the totals.
type Exchanger interface {
	Exchange(ctx context.Context, pool string, deltas map[string]float64) (map[string]float64, error)
}

// DefaultExchangeInterval is how often Pools exchange the counters of an active pool.
const DefaultExchangeInterval = 100 * time.Millisecond

// idleAfter is how long a pool that admits nothing keeps its queue and its counters.
const idleAfter = 10 * time.Minute

// Pools are a replica's queues, one per pool of providers, and the exchange of their counters
// with the other replicas. The zero value is not usable: call NewPools.
type Pools struct {
	exchanger Exchanger
	interval  time.Duration
	timeout   time.Duration
	log       logr.Logger
	queues    sync.Map // pool key → *Queue
	exchanges *prometheus.CounterVec
	now       func() time.Time
}

// PoolsOptions configure Pools.
type PoolsOptions struct {
	// Exchanger shares counters with the other replicas; nil keeps them in this replica.
	Exchanger Exchanger
	// Interval between exchanges of an active pool. Default DefaultExchangeInterval.
	Interval time.Duration
	// Timeout of one exchange. Default the interval.
	Timeout time.Duration
	// Registerer receives infergate_fair_share_exchanges_total; nil skips it.
	Registerer prometheus.Registerer
	Log        logr.Logger
}

// NewPools returns Pools.
func NewPools(o PoolsOptions) (*Pools, error) {
	if o.Interval <= 0 {
		o.Interval = DefaultExchangeInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = o.Interval
	}
	p := &Pools{exchanger: o.Exchanger, interval: o.Interval, timeout: o.Timeout, log: o.Log, now: time.Now,
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infergate_fair_share_exchanges_total",
			Help: "Exchanges of the fair-share token counters of a pool with the other gateway replicas through the budget store, by result (ok, error).",
		}, []string{"result"})}
	if o.Registerer != nil {
		if err := o.Registerer.Register(p.exchanges); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Queue returns the queue of a pool, made on first use.
func (p *Pools) Queue(pool string) *Queue {
	if q, ok := p.queues.Load(pool); ok {
		return q.(*Queue)
	}
	nq := NewQueue()
	nq.used, nq.waited = p.now(), p.now()
	q, _ := p.queues.LoadOrStore(pool, nq)
	return q.(*Queue)
}

// NeedLeaderElection is false: every replica exchanges its own counters.
func (p *Pools) NeedLeaderElection() bool { return false }

// Start exchanges the counters of every pool that admitted a request lately, each interval,
// and forgets pools idle for long, until ctx is done.
func (p *Pools) Start(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := p.now()
		p.queues.Range(func(key, value any) bool {
			q := value.(*Queue)
			q.mu.Lock()
			used, waited, n := q.used, q.waited, q.n
			q.mu.Unlock()
			if n == 0 && now.Sub(used) > idleAfter {
				p.queues.Delete(key)
				return true
			}
			// Counters decide only who waits: a pool where nothing waited lately is left
			// alone (its deltas go with its first exchange once something does).
			if p.exchanger != nil && (n > 0 || now.Sub(waited) < activeFor) {
				p.exchange(ctx, key.(string), q)
			}
			return true
		})
	}
}

func (p *Pools) exchange(ctx context.Context, pool string, q *Queue) {
	sent := q.deltas()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	totals, err := p.exchanger.Exchange(ctx, pool, sent)
	if err != nil {
		// The deltas stay and go with the next exchange; meanwhile this replica judges by
		// what it knows.
		p.exchanges.WithLabelValues("error").Inc()
		p.log.V(1).Info("fair-share counters not exchanged", "pool", pool, "error", err.Error())
		return
	}
	p.exchanges.WithLabelValues("ok").Inc()
	q.merge(sent, totals)
}

// activeFor is how long after a request last waited a pool's counters keep being exchanged.
const activeFor = 10 * time.Second

// counterTTL is how long the store keeps the counters of a pool no replica exchanges.
const counterTTL = time.Hour

// exchangeScript adds each replica's deltas to the pool's hash and returns it whole, in one
// round trip: HINCRBYFLOAT per workspace, then the expiry, then HGETALL.
var exchangeScript = redis.NewScript(`
for i = 2, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i+1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('HGETALL', KEYS[1])`)

// Redis exchanges counters through a Redis or Valkey server, such as the budget store.
type Redis struct {
	Client redis.UniversalClient
}

// Key is the Redis key of a pool's counters.
func Key(pool string) string { return "infergate:fair:{" + pool + "}" }

// Exchange implements Exchanger.
func (r *Redis) Exchange(ctx context.Context, pool string, deltas map[string]float64) (map[string]float64, error) {
	args := make([]any, 0, 1+2*len(deltas))
	args = append(args, counterTTL.Milliseconds())
	for ws, d := range deltas {
		args = append(args, ws, strconv.FormatFloat(d, 'g', -1, 64))
	}
	res, err := exchangeScript.Run(ctx, r.Client, []string{Key(pool)}, args...).StringSlice()
	if err != nil {
		return nil, err
	}
	totals := make(map[string]float64, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		v, err := strconv.ParseFloat(res[i+1], 64)
		if err != nil {
			continue
		}
		totals[res[i]] = v
	}
	return totals, nil
}
