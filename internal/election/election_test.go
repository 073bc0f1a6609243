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

package election_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/leaderelection"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/infergate/infergate/internal/election"
	"github.com/infergate/infergate/internal/testenv"
)

var (
	cfg *rest.Config
	k8s client.Client
)

func TestMain(m *testing.M) {
	env, err := testenv.Start(testenv.Options{WithoutCRDs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg = env.Config
	if k8s, err = client.New(cfg, client.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func newManager(t *testing.T) manager.Manager {
	t.Helper()
	m, err := ctrl.NewManager(cfg, ctrl.Options{Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newElector(t *testing.T, m manager.Manager, id string, term func(context.Context) error) *election.Elector {
	t.Helper()
	lock, err := leaderelection.NewResourceLock(cfg, m, leaderelection.Options{LeaderElection: true, LeaderElectionID: id, LeaderElectionNamespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return &election.Elector{Lock: lock, LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
		Term: term, Log: logr.Discard()}
}

func lease(t *testing.T, id string) coordinationv1.Lease {
	t.Helper()
	var l coordinationv1.Lease
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: id}, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func eventually(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
	}
}

// A leader that cannot renew its lease ends its term and stands again, without stopping; the
// lease goes back to it once free. controller-runtime's own election would end the process.
func TestLostLeaseEndsTheTermNotTheProcess(t *testing.T) {
	var started, ended atomic.Int32
	e := newElector(t, newManager(t), "lost", func(ctx context.Context) error {
		started.Add(1)
		<-ctx.Done()
		ended.Add(1)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	eventually(t, 10*time.Second, "no term started", func() bool { return started.Load() == 1 })

	// Another holder takes the lease, as after a partition that outlasted the renew deadline.
	l := lease(t, "lost")
	l.Spec.HolderIdentity = ptr.To("someone-else")
	l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if err := k8s.Update(context.Background(), &l); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the term did not end when the lease was lost", func() bool { return ended.Load() == 1 })
	select {
	case err := <-done:
		t.Fatalf("the elector stopped with the term: %v", err)
	default:
	}
	// someone-else never renews: once its lease expires, this replica leads again.
	eventually(t, 10*time.Second, "no second term", func() bool { return started.Load() == 2 })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ended.Load() != 2 {
		t.Errorf("%d terms ended, want 2", ended.Load())
	}
	if h := lease(t, "lost").Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("the lease is still held by %q after the elector stopped", *h)
	}
}

// On the way out, the term stops before the lease is released, so that no other replica's
// controllers run beside this one's.
func TestShutdownEndsTheTermBeforeReleasing(t *testing.T) {
	var heldAtEnd atomic.Value
	e := newElector(t, newManager(t), "shutdown", nil)
	started := make(chan struct{})
	e.Term = func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		heldAtEnd.Store(ptr.Deref(lease(t, "shutdown").Spec.HolderIdentity, ""))
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h := heldAtEnd.Load().(string); h == "" {
		t.Error("the lease was released before the term ended")
	}
	if h := ptr.Deref(lease(t, "shutdown").Spec.HolderIdentity, ""); h != "" {
		t.Errorf("the lease is still held by %q", h)
	}
}

// A term that fails releases the lease, and the elector stands again rather than exit.
func TestFailedTermStandsAgain(t *testing.T) {
	var terms atomic.Int32
	e := newElector(t, newManager(t), "failing", func(ctx context.Context) error {
		if terms.Add(1) == 1 {
			return fmt.Errorf("the controllers could not start")
		}
		<-ctx.Done()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	eventually(t, 10*time.Second, "no second term after the first failed", func() bool { return terms.Load() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A term's controllers share the replica's running cache, and take their event handlers with
// them when the term ends; a second term's controller of the same name starts.
func TestTermsShareTheCache(t *testing.T) {
	replica := newManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = replica.Start(ctx) }()
	if !replica.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}

	runTerm := func(seen *atomic.Int32) (stop func(), handled *atomic.Int32) {
		term, release, err := election.NewTerm(replica, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := ctrl.NewControllerManagedBy(term).For(&corev1.ConfigMap{}).Named("configmaps").
			Complete(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
				seen.Add(1)
				return reconcile.Result{}, nil
			})); err != nil {
			t.Fatal(err)
		}
		i, err := term.GetCache().GetInformer(ctx, &corev1.ConfigMap{})
		if err != nil {
			t.Fatal(err)
		}
		handled = new(atomic.Int32)
		if _, err := i.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: func(any) { handled.Add(1) }}); err != nil {
			t.Fatal(err)
		}
		termCtx, end := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- term.Start(termCtx) }()
		return func() {
			end()
			if err := <-done; err != nil {
				t.Error(err)
			}
			release()
		}, handled
	}
	create := func(name string) {
		if err := k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}); err != nil {
			t.Fatal(err)
		}
	}

	var first, second atomic.Int32
	stop, handled := runTerm(&first)
	create("during-the-first-term")
	eventually(t, 10*time.Second, "the first term reconciled nothing", func() bool { return first.Load() > 0 })
	stop()
	before := handled.Load()

	stop, _ = runTerm(&second)
	defer stop()
	create("during-the-second-term")
	eventually(t, 10*time.Second, "the second term reconciled nothing", func() bool { return second.Load() > 0 })
	if handled.Load() != before {
		t.Errorf("a handler of the first term still receives events after it ended")
	}
}
