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
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/snapshot"
)

func TestBudgetStatusReportsEnforcementAndUsage(t *testing.T) {
	ns := namespace(t)
	b := &inferencev1alpha1.InferenceBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
		Spec: inferencev1alpha1.InferenceBudgetSpec{Limits: inferencev1alpha1.BudgetLimits{
			RequestsPerMinute: ptr.To[int64](100), TokensPerDay: ptr.To[int64](50_000)}},
	}
	create(t, b)
	waitBudget(t, ns, "team", func(b *inferencev1alpha1.InferenceBudget) error {
		c := meta.FindStatusCondition(b.Status.Conditions, inferencev1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || b.Status.Enforcement != quota.EnforcementInProcess || len(b.Status.Usage) != 2 {
			return fmt.Errorf("status %+v", b.Status)
		}
		return nil
	})

	// The gateway admits a request of 300 tokens: status shows it.
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
		t.Fatal(err)
	}
	q := snapshot.Budget(b, systemWorkspace)
	r := &quota.Request{Input: 100, Output: 200}
	for i := range q.Limits {
		r.Counters = append(r.Counters, quota.Counter{Key: quota.CounterKey(q, &q.Limits[i], ns, ""), Budget: q, Limit: &q.Limits[i]})
	}
	var d quota.Decision
	if err := budgetLimiter.Reserve(context.Background(), r, &d); err != nil || !d.Allowed {
		t.Fatalf("reserve: %+v %v", d, err)
	}
	waitBudget(t, ns, "team", func(b *inferencev1alpha1.InferenceBudget) error {
		for _, u := range b.Status.Usage {
			if (u.Limit == "requestsPerMinute" && u.Used != 1) || (u.Limit == "tokensPerDay" && (u.Used != 300 || u.Max != 50_000)) {
				return fmt.Errorf("usage %+v", b.Status.Usage)
			}
			if !u.ResetsAt.After(time.Now()) {
				return fmt.Errorf("window of %s resets in the past: %s", u.Limit, u.ResetsAt)
			}
		}
		return nil
	})
}

func TestBudgetWithUnknownTimeZoneIsNotReady(t *testing.T) {
	ns := namespace(t)
	create(t, &inferencev1alpha1.InferenceBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mars"},
		Spec: inferencev1alpha1.InferenceBudgetSpec{TimeZone: "Mars/Olympus_Mons",
			Limits: inferencev1alpha1.BudgetLimits{TokensPerDay: ptr.To[int64](1000)}},
	})
	waitBudget(t, ns, "mars", func(b *inferencev1alpha1.InferenceBudget) error {
		c := meta.FindStatusCondition(b.Status.Conditions, inferencev1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != string(inferencev1alpha1.ReasonInvalidTimeZone) {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
}

func waitBudget(t *testing.T, ns, name string, check func(*inferencev1alpha1.InferenceBudget) error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var b inferencev1alpha1.InferenceBudget
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &b)
		if err == nil {
			err = check(&b)
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("budget %s/%s: %v", ns, name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
