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
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/infergate/infergate/internal/redistest"
)

// Three replicas on one store see one another's charges: a workspace served on one replica
// waits behind the others on every replica.
func TestCountersAreSharedThroughTheStore(t *testing.T) {
	srv := redistest.Start(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var replicas []*Pools
	for range 3 {
		p, err := NewPools(PoolsOptions{Exchanger: &Redis{Client: client}, Interval: 10 * time.Millisecond, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = p.Start(ctx) }()
		replicas = append(replicas, p)
	}
	// On replica 2 both workspaces wait for the pool; meanwhile replica 0 serves "flood"
	// 30,000 tokens and replica 1 serves "quiet" 1,000 (at weight 2: 500).
	q := replicas[2].Queue("pool")
	f, qt := ticket("flood", Standard, 1), &Ticket{Workspace: "quiet", Weight: 2, Class: Standard, Cost: 1}
	if _, err := q.Admit(f, full, 8, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Admit(qt, full, 8, time.Now()); err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if wait, _ := replicas[0].Queue("pool").Admit(ticket("flood", Standard, 1000), Room{Free: Unbounded}, 8, time.Now()); wait {
			t.Fatal("queued")
		}
	}
	if wait, _ := replicas[1].Queue("pool").Admit(&Ticket{Workspace: "quiet", Weight: 2, Class: Standard, Cost: 1000}, Room{Free: Unbounded}, 8, time.Now()); wait {
		t.Fatal("queued")
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Counter("flood") != 30_000 || q.Counter("quiet") != 500 {
		if time.Now().After(deadline) {
			t.Fatalf("replica 2 sees flood %v and quiet %v, want 30000 and 500 (tokens / weight)", q.Counter("flood"), q.Counter("quiet"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// So on replica 2, which served neither, quiet goes first.
	q.Dispatch(one)
	select {
	case <-qt.ready:
	case <-f.ready:
		t.Fatal("the flooding workspace went first on a replica that had served neither")
	case <-time.After(5 * time.Second):
		t.Fatal("nothing was dispatched")
	}
	// Every replica's own charges survive the exchange: replica 0 still sees them all.
	if got := replicas[0].Queue("pool").Counter("flood"); got < 30_000 {
		t.Fatalf("replica 0's counter of flood fell to %v", got)
	}
}
