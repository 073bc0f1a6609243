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
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infergate/infergate/internal/redistest"
)

// clock is a test clock that both stores read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// stores returns each store, on the clock c: the in-process one and a real redis-server.
func stores(t *testing.T, c *clock) map[string]Store {
	mem := NewMemory()
	mem.Now = c.Now
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	return map[string]Store{"memory": mem, "redis": &Redis{Client: client, Now: c.Now}}
}

func budget(name string, input, output bool, limits ...Limit) *Budget {
	b := &Budget{Workspace: "team-a", Name: name, ID: "team-a/" + name, Input: input, Output: output, Zone: time.UTC}
	b.Limits = limits
	return b
}

func counters(b *Budget, caller string) []Counter {
	cs := make([]Counter, len(b.Limits))
	for i := range b.Limits {
		cs[i] = Counter{Key: CounterKey(b, &b.Limits[i], "team-a", caller), Budget: b, Limit: &b.Limits[i]}
	}
	return cs
}

func TestRequestLimitRefusesPastTheLimitUntilTheNextWindow(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 5, 10, 0, 30, 0, time.UTC)}
	for name, s := range stores(t, c) {
		t.Run(name, func(t *testing.T) {
			b := budget("rpm-"+name, true, true, Limit{Name: "requestsPerMinute", Window: Minute, Max: 3})
			r := &Request{Counters: counters(b, ""), Input: 10, Output: 10}
			var d Decision
			for i := 0; i < 3; i++ {
				if err := s.Reserve(context.Background(), r, 1, &d); err != nil || !d.Allowed {
					t.Fatalf("request %d: allowed %v, err %v", i+1, d.Allowed, err)
				}
			}
			if d.States[0].Used != 3 || d.States[0].Remaining(&r.Counters[0]) != 0 {
				t.Errorf("state after 3: %+v", d.States[0])
			}
			if err := s.Reserve(context.Background(), r, 1, &d); err != nil || d.Allowed {
				t.Fatalf("4th request: allowed %v, err %v", d.Allowed, err)
			}
			if d.Refused != 0 || d.RetryAfter != 30*time.Second {
				t.Errorf("refused %d, retry after %s; want 0 and 30s (the rest of the minute)", d.Refused, d.RetryAfter)
			}
			c.Add(30 * time.Second)
			if err := s.Reserve(context.Background(), r, 1, &d); err != nil || !d.Allowed {
				t.Fatalf("next minute: allowed %v, err %v", d.Allowed, err)
			}
			c.Add(-30 * time.Second)
		})
	}
}

func TestTokensAreReservedClampedAndSettled(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)}
	for name, s := range stores(t, c) {
		t.Run(name, func(t *testing.T) {
			b := budget("tpm-"+name, true, true, Limit{Name: "tokensPerMinute", Window: Minute, Max: 1000, Tokens: true})
			ctx := context.Background()
			r := &Request{Counters: counters(b, ""), Input: 100, Output: 500}
			var d Decision
			if err := s.Reserve(ctx, r, 1, &d); err != nil || !d.Allowed || d.Output != 500 || d.States[0].Used != 600 {
				t.Fatalf("first: %+v, %v", d, err)
			}
			// 400 left: 100 of input leaves 300 of output, less than the 500 asked.
			var d2 Decision
			if err := s.Reserve(ctx, r, 1, &d2); err != nil || !d2.Allowed || d2.Output != 300 || d2.States[0].Used != 1000 {
				t.Fatalf("second is clamped to 300: %+v, %v", d2, err)
			}
			var d3 Decision
			if err := s.Reserve(ctx, r, 1, &d3); err != nil || d3.Allowed {
				t.Fatalf("third is refused: %+v, %v", d3, err)
			}
			// The first used 100 + 20: 480 come back, and a request fits again.
			l := &Limiter{store: s, local: NewMemory(), replicas: 1, timeout: time.Second, now: c.Now, m: mustMetrics(t)}
			d.Via = ViaStore
			l.Settle(ctx, r, &d, 100, 20)
			if err := s.Reserve(ctx, r, 1, &d3); err != nil || !d3.Allowed || d3.Output != 380 {
				t.Fatalf("after settling: %+v, %v", d3, err)
			}
		})
	}
}

func mustMetrics(t *testing.T) *limiterMetrics {
	m, err := newLimiterMetrics(nil, &Limiter{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOutputOnlyAndInputOnlyCounts(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)}
	for name, s := range stores(t, c) {
		t.Run(name, func(t *testing.T) {
			in := budget("in-"+name, true, false, Limit{Name: "tokensPerMinute", Window: Minute, Max: 150, Tokens: true})
			out := budget("out-"+name, false, true, Limit{Name: "tokensPerMinute", Window: Minute, Max: 50, Tokens: true})
			r := &Request{Counters: append(counters(in, ""), counters(out, "")...), Input: 100, Output: 80}
			var d Decision
			if err := s.Reserve(context.Background(), r, 1, &d); err != nil || !d.Allowed || d.Output != 50 {
				t.Fatalf("output clamped to the output budget: %+v, %v", d, err)
			}
			if d.States[0].Used != 100 || d.States[1].Used != 50 {
				t.Errorf("input budget holds %d (want 100), output budget %d (want 50)", d.States[0].Used, d.States[1].Used)
			}
			// The input budget has 50 left, less than the input: refused, by the input budget.
			if err := s.Reserve(context.Background(), r, 1, &d); err != nil || d.Allowed || d.Refused != 0 {
				t.Fatalf("refused by the input budget: %+v, %v", d, err)
			}
		})
	}
}

func TestCalendarWindowsFollowTheTimeZone(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database")
	}
	// 23:59:30 in Berlin on the last day of a month: UTC is an hour behind.
	c := &clock{t: time.Date(2026, 12, 31, 23, 59, 30, 0, berlin)}
	for name, s := range stores(t, c) {
		t.Run(name, func(t *testing.T) {
			b := budget("cal-"+name, true, true,
				Limit{Name: "tokensPerDay", Window: Day, Max: 100, Tokens: true},
				Limit{Name: "tokensPerMonth", Window: Month, Max: 150, Tokens: true})
			b.Zone = berlin
			r := &Request{Counters: counters(b, ""), Input: 60, Output: 0}
			var d Decision
			if err := s.Reserve(context.Background(), r, 1, &d); err != nil || !d.Allowed {
				t.Fatalf("first: %+v, %v", d, err)
			}
			if want := time.Date(2026, 12, 31, 0, 0, 0, 0, berlin); !d.States[0].Start.Equal(want) {
				t.Errorf("day window starts %s, want %s", d.States[0].Start, want)
			}
			if want := time.Date(2027, 1, 1, 0, 0, 0, 0, berlin); !d.States[1].End.Equal(want) {
				t.Errorf("month window ends %s, want %s", d.States[1].End, want)
			}
			if err := s.Reserve(context.Background(), r, 1, &d); err != nil || d.Allowed || d.Refused != 0 {
				t.Fatalf("the day budget refuses the second: %+v, %v", d, err)
			}
			if d.RetryAfter != 30*time.Second {
				t.Errorf("retry after %s, want 30s: both the day and the month end at midnight in Berlin", d.RetryAfter)
			}
			// Past midnight in Berlin (still 23:00 in UTC): a new day and a new month.
			c.Add(time.Minute)
			if err := s.Reserve(context.Background(), r, 1, &d); err != nil || !d.Allowed {
				t.Fatalf("new day: %+v, %v", d, err)
			}
			if d.States[0].Used != 60 || d.States[1].Used != 60 {
				t.Errorf("new windows hold %d and %d, want 60 each", d.States[0].Used, d.States[1].Used)
			}
			c.Add(-time.Minute)
		})
	}
}

// The store decides on its own clock: a replica whose clock is an hour ahead still counts a
// request in the day the store is in.
func TestCalendarWindowIsTheStoresNotTheReplicas(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 5, 23, 30, 0, 0, time.UTC)}
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer client.Close()
	b := budget("skew", true, true, Limit{Name: "tokensPerDay", Window: Day, Max: 100, Tokens: true})
	r := &Request{Counters: counters(b, ""), Input: 10}
	// The script gets the store's time (c) but the candidates from a replica an hour ahead,
	// already in the next day.
	ahead := &Redis{Client: client, Now: c.Now, replicaNow: func() time.Time { return c.Now().Add(time.Hour) }}
	var d Decision
	if err := ahead.Reserve(context.Background(), r, 1, &d); err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	if want := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC); !d.States[0].Start.Equal(want) {
		t.Errorf("window starts %s, want %s", d.States[0].Start, want)
	}
}

// Many clients race for the last tokens of a minute: what is admitted never exceeds the limit,
// and the limit is used up.
func TestConcurrentRequestsNeverExceedTheLimit(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)}
	for name, s := range stores(t, c) {
		t.Run(name, func(t *testing.T) {
			b := budget("race-"+name, true, true, Limit{Name: "tokensPerMinute", Window: Minute, Max: 10_000, Tokens: true})
			var admitted atomic.Int64
			var wg sync.WaitGroup
			for g := 0; g < 50; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := &Request{Counters: counters(b, ""), Input: 37, Output: 200}
					for i := 0; i < 20; i++ {
						var d Decision
						if err := s.Reserve(context.Background(), r, 1, &d); err != nil {
							t.Error(err)
							return
						}
						if d.Allowed {
							admitted.Add(37 + d.Output)
						}
					}
				}()
			}
			wg.Wait()
			// 1000 requests of up to 237 tokens against 10,000: the window fills to the token.
			if got := admitted.Load(); got != 10_000 {
				t.Errorf("admitted %d tokens, want exactly 10000", got)
			}
		})
	}
}

func TestPerCallerCountersAreApart(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)}
	s := NewMemory()
	s.Now = c.Now
	b := budget("each", true, true, Limit{Name: "requestsPerMinute", Window: Minute, Max: 1})
	b.PerCaller = true
	var d Decision
	for _, caller := range []string{"alice", "bob"} {
		r := &Request{Counters: counters(b, caller)}
		if err := s.Reserve(context.Background(), r, 1, &d); err != nil || !d.Allowed {
			t.Fatalf("%s: %+v %v", caller, d, err)
		}
	}
	if err := s.Reserve(context.Background(), &Request{Counters: counters(b, "alice")}, 1, &d); err != nil || d.Allowed {
		t.Fatalf("alice's second: %+v %v", d, err)
	}
}

func TestLimiterFailureModes(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)}
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer client.Close()
	l, err := NewLimiter(LimiterOptions{Store: &Redis{Client: client, Now: c.Now}, Replicas: 4, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	closed := budget("closed", true, true, Limit{Name: "requestsPerMinute", Window: Minute, Max: 100})
	open := budget("open", true, true, Limit{Name: "requestsPerMinute", Window: Minute, Max: 100})
	open.FailOpen = true
	ctx := context.Background()
	var d Decision
	if err := l.Reserve(ctx, &Request{Counters: counters(closed, "")}, &d); err != nil || !d.Allowed || d.Via != ViaStore {
		t.Fatalf("store up: %+v %v", d, err)
	}

	srv.Stop()
	if err := l.Reserve(ctx, &Request{Counters: counters(closed, "")}, &d); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("closed budget with the store down: %v, want ErrUnavailable", err)
	}
	if !l.StoreDown() {
		t.Error("StoreDown is false after a failed call")
	}
	// Open: each of the 4 replicas admits 100 / 4.
	allowed := 0
	for i := 0; i < 40; i++ {
		if err := l.Reserve(ctx, &Request{Counters: counters(open, "")}, &d); err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
			if d.Via != ViaFallback {
				t.Errorf("via %q, want fallback", d.Via)
			}
		}
	}
	if allowed != 25 {
		t.Errorf("open budget admitted %d with the store down, want 25 (100 / 4 replicas)", allowed)
	}
	// A budget of each kind: the closed one decides.
	both := append(counters(open, ""), counters(closed, "")...)
	if err := l.Reserve(ctx, &Request{Counters: both}, &d); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("open and closed: %v, want ErrUnavailable", err)
	}

	srv.Restart()
	c.Add(2 * time.Second) // past the back-off
	if err := l.Reserve(ctx, &Request{Counters: counters(open, "")}, &d); err != nil || !d.Allowed || d.Via != ViaStore {
		t.Fatalf("store back: %+v %v", d, err)
	}
}

func TestWithoutAStoreEachReplicaTakesItsShare(t *testing.T) {
	l, err := NewLimiter(LimiterOptions{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if l.Enforcement() != EnforcementPerReplica {
		t.Errorf("enforcement %q", l.Enforcement())
	}
	b := budget("share", true, true, Limit{Name: "requestsPerMinute", Window: Minute, Max: 10})
	allowed := 0
	for i := 0; i < 10; i++ {
		var d Decision
		if err := l.Reserve(context.Background(), &Request{Counters: counters(b, "")}, &d); err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("admitted %d, want 3 (10 / 3 replicas)", allowed)
	}
}

// The store's health is checked without traffic, so that an outage shows on the metric.
func TestLimiterNoticesAnOutageWithoutTraffic(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer client.Close()
	l, err := NewLimiter(LimiterOptions{Store: &Redis{Client: client}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Start(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !l.StoreDown() {
		if time.Now().After(deadline) {
			t.Fatal("StoreDown stayed false with the store stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
