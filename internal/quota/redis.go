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
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed reserve.lua
var reserveLua string

var (
	reserveScript = redis.NewScript(reserveLua)
	settleScript  = redis.NewScript(`
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i])
  end
end
return 0`)
)

// Redis is a store in a Redis or Valkey server that every gateway replica shares. Each
// decision is one round trip: a script that reads the counters, decides and takes them
// atomically, on the server's clock, so that replicas' clocks do not matter.
type Redis struct {
	Client redis.UniversalClient
	// Now, when set, replaces the server's clock: tests move it across windows.
	Now func() time.Time

	replicaNow func() time.Time // the replica's clock, for calendar candidates; tests skew it
}

// Reserve implements Store.
func (s *Redis) Reserve(ctx context.Context, r *Request, divisor int64, d *Decision) error {
	n := len(r.Counters)
	keys := make([]string, n)
	args := make([]any, 0, 3+4*n)
	now := ""
	local := time.Now()
	if s.Now != nil {
		local = s.Now()
		now = strconv.FormatInt(local.UnixMilli(), 10)
	}
	if s.replicaNow != nil {
		local = s.replicaNow()
	}
	args = append(args, now, r.Input, r.Output)
	for i := range r.Counters {
		c := &r.Counters[i]
		keys[i] = c.Key
		win, candidates := "s", ""
		switch c.Limit.Window {
		case Minute:
			win = "m"
		case Day, Month:
			win, candidates = "c", calendarCandidates(c, local)
		}
		what := 0
		if c.Limit.Tokens {
			in, out := c.counts()
			if in {
				what++
			}
			if out {
				what += 2
			}
		}
		args = append(args, win, c.Limit.Max/divisor, what, candidates)
	}
	res, err := reserveScript.Run(ctx, s.Client, keys, args...).Int64Slice()
	if err != nil {
		return err
	}
	if len(res) != 4+3*n {
		return fmt.Errorf("budget store: the reserve script returned %d values, want %d", len(res), 4+3*n)
	}
	d.Allowed = res[0] == 1
	d.Now = time.UnixMilli(res[2])
	d.RetryAfter = time.Duration(res[3]) * time.Millisecond
	d.States = d.States[:0]
	for i := 0; i < n; i++ {
		v := res[4+3*i:]
		d.States = append(d.States, State{Start: time.UnixMilli(v[0]), End: time.UnixMilli(v[1]), Used: v[2]})
	}
	d.reserved = d.reserved[:0]
	if !d.Allowed {
		d.Output, d.Refused = 0, int(res[1])-1
		return nil
	}
	d.Output, d.Refused = res[1], -1
	for i := range r.Counters {
		d.reserved = append(d.reserved, take(&r.Counters[i], r.Input, d.Output))
	}
	return nil
}

// calendarCandidates are the day or month windows before, holding and after local, as the
// script wants them: the store's clock picks the one that holds its time, so a replica whose
// clock is off by less than a window still counts in the right one.
func calendarCandidates(c *Counter, local time.Time) string {
	start, end := c.Budget.Window(c.Limit, local)
	prevStart, _ := c.Budget.Window(c.Limit, start.Add(-time.Millisecond))
	_, nextEnd := c.Budget.Window(c.Limit, end)
	var b strings.Builder
	for _, w := range [][2]time.Time{{start, end}, {prevStart, start}, {end, nextEnd}} {
		b.WriteString(strconv.FormatInt(w[0].UnixMilli(), 10))
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(w[1].UnixMilli(), 10))
		b.WriteByte(';')
	}
	return b.String()
}

// Settle implements Store.
func (s *Redis) Settle(ctx context.Context, keys []string, deltas []int64) error {
	args := make([]any, len(deltas))
	for i, d := range deltas {
		args[i] = d
	}
	return settleScript.Run(ctx, s.Client, keys, args...).Err()
}

// Used implements Store.
func (s *Redis) Used(ctx context.Context, keys []string) ([]int64, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := s.Client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[i], _ = strconv.ParseInt(str, 10, 64)
		}
	}
	return out, nil
}

// Ping implements Store.
func (s *Redis) Ping(ctx context.Context) error { return s.Client.Ping(ctx).Err() }
