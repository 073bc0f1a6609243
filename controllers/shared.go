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

// Package controllers holds the reconcilers of ModelEntity, Provider and Deployment. They run
// on the elected leader and write status; routing itself is built on every replica by
// internal/snapshot from the same objects.
package controllers

import (
	"context"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

// FieldOwner is the field manager of everything the controllers apply.
const FieldOwner = "infergate"

// Labels the controllers put on what they create.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	LabelDeployment = "inference.infergate.dev/deployment"
)

// staleRetry is how soon an object is reconciled again when a write guarded by its
// resourceVersion met a newer version. The requeue is what brings it back: a newer version
// that changes only status passes no generation predicate.
const staleRetry = 100 * time.Millisecond

// patchStatus writes obj's status as a merge patch from before, only if obj is still the version
// that was read. Status is computed from the status last read (phase history, transition
// times, models kept through a blip): written over a newer version, it would undo that
// version's changes. It reports stale when the write was refused for that reason.
func patchStatus(ctx context.Context, c client.Client, obj, before client.Object) (stale bool, err error) {
	err = c.Status().Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) {
		return true, nil
	}
	return false, err
}

// readyCondition returns the Ready condition of an object of the given generation.
func readyCondition(status metav1.ConditionStatus, reason inferencev1alpha1.ConditionReason, message string, generation int64) metav1.Condition {
	return metav1.Condition{
		Type:               inferencev1alpha1.ConditionReady,
		Status:             status,
		Reason:             string(reason),
		Message:            truncate(message, 32768),
		ObservedGeneration: generation,
	}
}

// readyChanged reports whether the Ready condition differs in status or reason.
func readyChanged(old []metav1.Condition, next metav1.Condition) bool {
	c := meta.FindStatusCondition(old, inferencev1alpha1.ConditionReady)
	return c == nil || c.Status != next.Status || c.Reason != next.Reason
}

func eventType(status metav1.ConditionStatus) string {
	if status == metav1.ConditionTrue {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}

// jitter spreads d by ±10% so that many objects do not act in step.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
