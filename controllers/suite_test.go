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

package controllers_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/controllers"
	"github.com/infergate/infergate/internal/discovery"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/scrape"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
)

const systemWorkspace = "system"

// One API server and one manager running the three controllers for the package.
var (
	env *envtest.Environment
	k8s client.Client
	// budgetLimiter is the in-process limiter whose counters budget status reports.
	budgetLimiter = func() *quota.Limiter { l, _ := quota.NewLimiter(quota.LimiterOptions{}); return l }()
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	grants, err := testenv.GatewayAPICRDs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err = testenv.Start(testenv.Options{ExtraCRDPaths: []string{grants}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 testenv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := controllers.IndexFields(context.Background(), mgr.GetFieldIndexer()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	events := mgr.GetEventRecorder("infergate")
	setups := []interface{ SetupWithManager(ctrl.Manager) error }{
		&controllers.ProviderReconciler{Client: mgr.GetClient(), Recorder: events, Prober: discovery.NewProber(2*time.Second, true, ""), MetricsClient: scrape.NewClient(true)},
		&controllers.ModelEntityReconciler{Client: mgr.GetClient(), Recorder: events, SystemWorkspace: systemWorkspace, GrantsAvailable: true},
		&controllers.DeploymentReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Recorder: events},
		&controllers.InferenceBudgetReconciler{Client: mgr.GetClient(), Recorder: events, SystemWorkspace: systemWorkspace, Limiter: budgetLimiter, UsageInterval: 200 * time.Millisecond},
	}
	for _, s := range setups {
		if err := s.SetupWithManager(mgr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemWorkspace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

var nsCounter atomic.Int32

// namespace creates a fresh namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	short := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	short = strings.NewReplacer("/", "-", "_", "-").Replace(short)
	if len(short) > 20 {
		short = short[:20]
	}
	name := strings.TrimRight(fmt.Sprintf("t%d-%s", nsCounter.Add(1), short), "-")
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// upstream starts a simulator serving models with an API key.
func upstream(t *testing.T, key string, models ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(simulator.New(simulator.Options{Models: models, APIKey: key}))
	t.Cleanup(srv.Close)
	return srv
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func secret(ns, name, key, value string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{key: value}}
}

// eventually polls check until it passes or the deadline expires.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyReason waits until obj's Ready condition has the reason, and returns the condition.
func readyReason(t *testing.T, obj client.Object, reason inferencev1alpha1.ConditionReason) metav1.Condition {
	t.Helper()
	var cond metav1.Condition
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *inferencev1alpha1.Provider:
			conds = o.Status.Conditions
		case *inferencev1alpha1.ModelEntity:
			conds = o.Status.Conditions
		case *inferencev1alpha1.Deployment:
			conds = o.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, inferencev1alpha1.ConditionReady)
		if c == nil || c.Reason != string(reason) {
			return fmt.Errorf("%s Ready condition %+v, want reason %s", obj.GetName(), c, reason)
		}
		cond = *c
		return nil
	})
	return cond
}

func kindOf(obj client.Object) string {
	gvks, _, err := testenv.Scheme.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return ""
	}
	return gvks[0].Kind
}

// eventsFor returns the reasons of the events recorded for an object.
func eventsFor(t *testing.T, obj client.Object) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(obj.GetNamespace())); err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Name == obj.GetName() && e.Regarding.Kind == kindOf(obj) {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

func ctx() context.Context { return context.Background() }

func key(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
