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

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// Two replicas with leader election: the follower builds its own routing table and serves
// the same routes; when the leader dies, the follower keeps serving, takes the lease and runs
// the controllers, so new objects become routable through it.
func TestFollowerServesAndTakesOver(t *testing.T) {
	c, follower := startTwoReplicas(t, "llama")

	// One of them holds the lease: usually the first, but both race for it once their caches
	// have synced.
	leader := c.manager
	c.eventually(20*time.Second, func() error {
		switch first, second := acquired(c.manager), acquired(follower); {
		case first && second:
			return errors.New("both managers hold the lease")
		case second:
			leader, follower = follower, c.manager
		case !first:
			return errors.New("no manager has acquired the lease")
		}
		return nil
	})
	// Clients of the follower call on while the leader dies (issue 13's fifth scenario).
	ctx, stop := context.WithCancel(context.Background())
	tl := newTally()
	wg := load(ctx, c.openaiVia(follower, "team"), testutil.ChaosSize(2, 8), 4, tl)
	time.Sleep(500 * time.Millisecond)
	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	if s := c.statusVia(follower, "team", "llama"); s != 200 {
		t.Fatalf("the follower answered %d right after the leader died", s)
	}
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: after, namespace: team}
spec: {servedModelName: ` + served + `}
`)
	// The follower serves a new entity at once (its table follows the cache) ...
	c.eventually(10*time.Second, func() error {
		if s := c.statusVia(follower, "team", "after"); s != 200 {
			return fmt.Errorf("status %d", s)
		}
		return nil
	})
	routable := time.Since(died)
	// ... and, once the dead leader's lease expires, its controllers write status.
	c.run("wait", "--for=condition=Ready", "-n", "team", "modelentity/after", "--timeout=60s")
	ready := time.Since(died)
	if s := c.statusVia(follower, "team", "llama"); s != 200 {
		t.Fatalf("status %d after the takeover", s)
	}
	stop()
	wg.Wait()
	testutil.ReportChaos(t, tl.row("5. the leader of two replicas killed (SIGKILL)",
		fmt.Sprintf("a ModelEntity applied then routes through the other replica %s after, and is Ready (its controllers lead) %s after (lease 15s)",
			routable.Round(10*time.Millisecond), ready.Round(100*time.Millisecond))))
	if tl.failed != 0 || tl.refused != 0 || tl.cut != 0 || tl.short != 0 || tl.ok == 0 {
		t.Errorf("clients of the surviving replica saw failures: %s", tl)
	}
}

// startTwoReplicas starts two managers that elect a leader, with Provider team/sim (an
// in-process simulator) and ModelEntity team/<entity> routable through both.
func startTwoReplicas(t *testing.T, entity string) (*cluster, *manager) {
	t.Helper()
	election := []string{"--leader-elect", "--leader-election-namespace", "infergate-system"}
	c := startCluster(t, election...)
	follower := c.startManager(election...)
	up := newUpstream(t, "sim", "", served)
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim, namespace: team}
spec: {url: ` + up.srv.URL + `}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: ` + entity + `, namespace: team}
spec: {servedModelName: ` + served + `}
`)
	c.routableOn(20*time.Second, "team", entity, c.manager, follower)
	return c, follower
}

// acquired reports whether m has logged that it acquired the leader election lease.
func acquired(m *manager) bool {
	return strings.Contains(m.logs.String(), "Successfully acquired lease")
}
