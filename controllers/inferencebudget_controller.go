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

package controllers

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/snapshot"
)

// +kubebuilder:rbac:groups=inference.infergate.dev,resources=inferencebudgets,verbs=get;list;watch
// +kubebuilder:rbac:groups=inference.infergate.dev,resources=inferencebudgets/status,verbs=patch

// BudgetUsageInterval is how often a budget's status reports the usage of its windows.
const BudgetUsageInterval = 10 * time.Second

// InferenceBudgetReconciler reports in an InferenceBudget's status whether the gateway enforces
// it as written, where its counters live, and what its current windows hold.
type InferenceBudgetReconciler struct {
	client.Client
	Recorder        recorder.EventRecorder
	SystemWorkspace string
	// Limiter is the gateway's: its store holds the counters read into status.
	Limiter *quota.Limiter
	// UsageInterval is how often status reports usage. Default BudgetUsageInterval.
	UsageInterval time.Duration
}

// Reconcile reports on one budget, and comes back every BudgetUsageInterval for its usage.
func (r *InferenceBudgetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var b inferencev1alpha1.InferenceBudget
	if err := r.Get(ctx, req.NamespacedName, &b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	next := b.Status.DeepCopy()
	next.ObservedGeneration = b.Generation
	next.Enforcement = r.Limiter.Enforcement()
	status, reason, message := metav1.ConditionTrue, inferencev1alpha1.ReasonReady, r.enforcedText(&b)
	if _, err := time.LoadLocation(b.Spec.TimeZone); b.Spec.TimeZone != "" && err != nil {
		status, reason = metav1.ConditionFalse, inferencev1alpha1.ReasonInvalidTimeZone
		message = fmt.Sprintf("spec.timeZone %q is not a known IANA time zone (such as Europe/Berlin); day and month windows follow UTC until it is fixed", b.Spec.TimeZone)
	}
	next.Usage = nil
	if q := snapshot.Budget(&b, r.SystemWorkspace); !q.Global && !q.PerCaller {
		// The counters of the budget's own workspace; per-caller and system-wide counters are
		// in the gateway's metrics.
		counters := make([]quota.Counter, len(q.Limits))
		for i := range q.Limits {
			counters[i] = quota.Counter{Key: quota.CounterKey(q, &q.Limits[i], b.Namespace, ""), Budget: q, Limit: &q.Limits[i]}
		}
		states, err := r.Limiter.Used(ctx, counters)
		switch {
		case err != nil && status == metav1.ConditionTrue:
			status, reason = metav1.ConditionFalse, inferencev1alpha1.ReasonStoreUnavailable
			// The error names the store's address: it goes to the manager's log, not to tenants.
			log.FromContext(ctx).Error(err, "read the usage of an inference budget")
			message = "the budget store cannot be reached (see the manager's log); spec.failureMode " + string(b.Spec.FailureMode) + " decides meanwhile"
			next.Usage = b.Status.Usage
		case err == nil:
			for i, s := range states {
				next.Usage = append(next.Usage, inferencev1alpha1.WindowUsage{Limit: q.Limits[i].Name, Used: s.Used,
					Max: q.Limits[i].Max, ResetsAt: metav1.NewTime(s.End.UTC().Truncate(time.Second))})
			}
		}
	}
	cond := readyCondition(status, reason, message, b.Generation)
	transition := readyChanged(b.Status.Conditions, cond)
	meta.SetStatusCondition(&next.Conditions, cond)
	if !equality.Semantic.DeepEqual(&b.Status, next) {
		before := b.DeepCopy()
		b.Status = *next
		stale, err := patchStatus(ctx, r.Client, &b, before)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("patch status of inference budget %s: %w", req, err)
		}
		if stale {
			return ctrl.Result{RequeueAfter: staleRetry}, nil
		}
	}
	if transition {
		r.Recorder.Eventf(&b, nil, eventType(cond.Status), cond.Reason, "Enforce", "%s", cond.Message)
		log.FromContext(ctx).Info("inference budget readiness changed", "ready", cond.Status, "reason", cond.Reason)
	}
	return ctrl.Result{RequeueAfter: cmp.Or(r.UsageInterval, BudgetUsageInterval)}, nil
}

// enforcedText says how the gateway enforces b.
func (r *InferenceBudgetReconciler) enforcedText(b *inferencev1alpha1.InferenceBudget) string {
	scope := "in this workspace"
	if b.Namespace == r.SystemWorkspace {
		scope = "in every workspace, with counters for each"
	}
	switch r.Limiter.Enforcement() {
	case quota.EnforcementStore:
		return "enforced " + scope + " by every gateway replica on the shared budget store"
	case quota.EnforcementPerReplica:
		return fmt.Sprintf("enforced %s without a budget store: each of the %d gateway replicas admits the limits divided by %d (configure --budget-store for exact limits)",
			scope, r.Limiter.Replicas(), r.Limiter.Replicas())
	}
	return "enforced " + scope + " by the gateway's one replica, in its memory"
}

// SetupWithManager registers the controller.
func (r *InferenceBudgetReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&inferencev1alpha1.InferenceBudget{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("inferencebudget").
		Complete(r)
}
