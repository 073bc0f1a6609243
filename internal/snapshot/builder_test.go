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

package snapshot_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/snapshot"
	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/testutil"
)

// failingCache is the informer cache of a real API server whose reads of ModelEntities fail
// while fail is above zero: no object of the API server makes a read from the cache fail.
type failingCache struct {
	cache.Cache
	fail atomic.Int32
}

func (c *failingCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*inferencev1alpha1.ModelEntityList); ok && c.fail.Add(-1) >= 0 {
		return errors.New("injected failure")
	}
	return c.Cache.List(ctx, list, opts...)
}

// apiServer starts a real API server for t and returns it, a client of it, and a context
// cancelled when t ends.
func apiServer(t *testing.T) (*envtest.Environment, client.Client, context.Context) {
	t.Helper()
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	k8s, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return env, k8s, ctx
}

// A build that fails is counted and retried without waiting for a change, and the table in
// use stays until a build succeeds.
func TestFailedBuildIsRetried(t *testing.T) {
	env, k8s, ctx := apiServer(t)
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &inferencev1alpha1.ModelEntity{ObjectMeta: metav1.ObjectMeta{Name: "llama", Namespace: "team"},
		Spec: inferencev1alpha1.ModelEntitySpec{ServedModelName: "meta/llama-3.1-8b-instruct"}}); err != nil {
		t.Fatal(err)
	}

	informers, err := cache.New(env.Config, cache.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	failing := &failingCache{Cache: informers}
	failing.fail.Store(2)
	store := routing.NewStore()
	reg := prometheus.NewRegistry()
	b := &snapshot.Builder{Cache: failing, Store: store, SystemWorkspace: "system", Log: logr.Discard(), Registerer: reg}
	go func() { _ = b.Start(ctx) }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := store.Load().Entity("team", "llama"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the entity never reached the routing table: the failed builds were not retried")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, want := range map[string]float64{
		"infergate_routing_table_build_errors_total": 2,
		"infergate_routing_table_entities":           1,
		"infergate_routing_table_providers":          0,
	} {
		if got := testutil.MetricSum(t, reg, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// The informers' first events may have asked for a build of their own meanwhile.
	if got := testutil.MetricSum(t, reg, "infergate_routing_table_builds_total", nil); got < 1 {
		t.Errorf("infergate_routing_table_builds_total = %v, want a build at least", got)
	}
}

// A Provider whose spec changed is not routed to, with its key, before a probe of that spec:
// readiness counts only from a status of the Provider's current generation. No controller
// runs here: the test writes status as the Provider controller would.
func TestChangedProviderIsNotRoutedToBeforeItIsProbed(t *testing.T) {
	env, k8s, ctx := apiServer(t)
	const served = "meta/llama-3.1-8b-instruct"
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "key"}, StringData: map[string]string{"key": "sk-team"}},
		&inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "nim"}, Spec: inferencev1alpha1.ProviderSpec{
			URL: "https://nim.example.com", APIKeySecretRef: &inferencev1alpha1.SecretKeyReference{Name: "key", Key: "key"}}},
		&inferencev1alpha1.ModelEntity{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "llama"},
			Spec: inferencev1alpha1.ModelEntitySpec{ServedModelName: served}},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	informers, err := cache.New(env.Config, cache.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	store := routing.NewStore()
	b := &snapshot.Builder{Cache: informers, Store: store, SystemWorkspace: "system", Log: logr.Discard()}
	go func() { _ = b.Start(ctx) }()

	var p inferencev1alpha1.Provider
	read := func() {
		t.Helper()
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: "team", Name: "nim"}, &p); err != nil {
			t.Fatal(err)
		}
	}
	// probed writes status as a probe of the given generation that succeeded would.
	probed := func(generation int64) {
		t.Helper()
		read()
		p.Status.ObservedGeneration = generation
		p.Status.Models = []string{served}
		p.Status.Conditions = []metav1.Condition{{Type: inferencev1alpha1.ConditionReady, Status: metav1.ConditionTrue,
			Reason: string(inferencev1alpha1.ReasonReady), Message: "probed", ObservedGeneration: generation, LastTransitionTime: metav1.Now()}}
		if err := k8s.Status().Update(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	// table waits until the routing table has the provider at url, and reports whether the
	// provider and the entity are routable there.
	table := func(url string) (providerReady, entityRoutable bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			tbl := store.Load()
			if rp, ok := tbl.Provider("team", "nim"); ok && rp.URL.String() == url {
				e, ok := tbl.Entity("team", "llama")
				return rp.Ready, ok && len(e.Backends) > 0
			}
			if time.Now().After(deadline) {
				t.Fatalf("the routing table never had provider team/nim at %s", url)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// eventuallyRoutable waits until the provider at url is routable.
	eventuallyRoutable := func(url string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if ready, routable := table(url); ready && routable {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("provider team/nim at %s never became routable", url)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	read()
	if p.Generation != 1 {
		t.Fatalf("generation %d, want 1", p.Generation)
	}
	probed(1)
	eventuallyRoutable("https://nim.example.com")

	// A new URL: generation 2, and the status still of generation 1.
	read()
	p.Spec.URL = "https://elsewhere.example.com"
	if err := k8s.Update(ctx, &p); err != nil {
		t.Fatal(err)
	}
	read()
	if p.Generation != 2 || p.Status.ObservedGeneration != 1 {
		t.Fatalf("generation %d, observed %d: want 2 and 1", p.Generation, p.Status.ObservedGeneration)
	}
	if ready, routable := table("https://elsewhere.example.com"); ready || routable {
		t.Errorf("before a probe of its new URL: provider ready %v, entity routable %v; want neither", ready, routable)
	}

	probed(2)
	eventuallyRoutable("https://elsewhere.example.com")
}

// A namespace's share weight, and an entity's priority and queue, reach the table, and a
// change of the weight rebuilds it.
func TestShareWeightAndPriorityReachTheTable(t *testing.T) {
	env, k8s, ctx := apiServer(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team", Annotations: map[string]string{routing.ShareWeightAnnotation: "3"}}}
	length := int32(5)
	for _, obj := range []client.Object{ns,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other", Annotations: map[string]string{routing.ShareWeightAnnotation: "a lot"}}},
		&inferencev1alpha1.ModelEntity{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "llama"},
			Spec: inferencev1alpha1.ModelEntitySpec{ServedModelName: "meta/llama", Priority: inferencev1alpha1.PrioritySheddable,
				Queue: &inferencev1alpha1.QueuePolicy{MaxLength: &length}}},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	informers, err := cache.New(env.Config, cache.Options{Scheme: testenv.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = informers.Start(ctx) }()
	store := routing.NewStore()
	b := &snapshot.Builder{Cache: informers, Store: store, SystemWorkspace: "system", Log: logr.Discard()}
	go func() { _ = b.Start(ctx) }()

	weight := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for store.Load().ShareWeight("team") != want {
			if time.Now().After(deadline) {
				t.Fatalf("share weight of team %v, want %v", store.Load().ShareWeight("team"), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	weight(3)
	tbl := store.Load()
	e, ok := tbl.Entity("team", "llama")
	if !ok || e.Priority != flow.Sheddable || e.Queue.MaxLength != 5 || e.Queue.MaxTime != routing.DefaultMaxQueueTime {
		t.Fatalf("entity %+v", e)
	}
	if w := tbl.ShareWeight("other"); w != 1 {
		t.Errorf("a weight that is not a number gave %v, want 1", w)
	}
	ns.Annotations[routing.ShareWeightAnnotation] = "0.5"
	if err := k8s.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	weight(0.5)
}
