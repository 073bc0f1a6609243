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
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infergate/infergate/hack/internal/redisproc"
)

// outageResult is one outage phase: the budget failing closed or open while redis-server is
// down.
type outageResult struct {
	open                      bool
	limit                     int64
	start, kill, restart, end time.Time
	records                   []record
	counters                  map[time.Time]int64 // the store's counters after the restart
	windowStarts              []time.Time
	restartErr                error
}

// outagePhase runs the clients against a budget that fails open or closed, kills redis-server
// at -kill-at into a window (at least 10 s after the load starts), starts it again, empty,
// after -outage, and keeps the load until the end of the window in which it came back.
func outagePhase(sims []string, rs *redisproc.Server, limit int64, open bool, spread []int) (*outageResult, error) {
	name := "closed"
	if open {
		name = "open"
	}
	b := budget(name, limit, open)
	reps, stop, err := startReplicas(spec(sims, b), rs.Addr)
	if err != nil {
		return nil, err
	}
	defer stop()
	o := &outageResult{open: open, limit: limit, start: time.Now()}
	o.kill = o.start.Truncate(time.Minute).Add(*killAt)
	for o.kill.Before(o.start.Add(10 * time.Second)) {
		o.kill = o.kill.Add(time.Minute)
	}
	o.restart = o.kill.Add(*outage)
	o.end = o.restart.Truncate(time.Minute).Add(time.Minute)
	for w := o.start.Truncate(time.Minute); w.Before(o.end); w = w.Add(time.Minute) {
		o.windowStarts = append(o.windowStarts, w)
	}
	logf("outage, failing %s: redis-server down from %s to %s, load until %s", name, o.kill.Format("15:04:05"), o.restart.Format("15:04:05"), o.end.Format("15:04:05"))
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(time.Until(o.kill))
		rs.Kill()
		o.kill = time.Now()
		logf("redis-server killed")
		time.Sleep(time.Until(o.restart))
		o.restartErr = rs.Start()
		o.restart = time.Now()
		logf("redis-server started again")
	}()
	o.records = drive(reps, workspace, spread, o.end, 7+boolSalt(open))
	<-done
	if o.restartErr != nil {
		return nil, fmt.Errorf("restart redis-server: %w", o.restartErr)
	}
	time.Sleep(time.Until(o.end.Add(*settleWait)))
	c := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer c.Close()
	o.counters = map[time.Time]int64{}
	for _, w := range o.windowStarts {
		v, err := c.Get(context.Background(), counterKey(b, w)).Int64()
		if err != nil && err != redis.Nil {
			return nil, fmt.Errorf("read the counter of window %s: %w", w.Format("15:04"), err)
		}
		o.counters[w] = v
	}
	return o, nil
}

func (o *outageResult) budgetName() string {
	if o.open {
		return "open"
	}
	return "closed"
}

func boolSalt(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
