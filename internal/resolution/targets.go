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

package resolution

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

// Target is a target of a virtual model (spec.targets), resolved.
type Target struct {
	Namespace, Name string
	Weight, Order   int32
	// ServedModelName overrides the target's own served name when set.
	ServedModelName string
	// TimeToFirstToken bounds the wait for a stream's first bytes; 0 for none.
	TimeToFirstToken time.Duration
	// Self: the target is the entity itself, and stands for its own providers.
	Self bool
	// Usable tells whether requests may be sent to the target: it exists, is permitted and has
	// providers of its own. Ready tells besides whether one of them is Ready.
	Usable, Ready bool
	// Reason and Message say why a target is not ready.
	Reason  inferencev1alpha1.ConditionReason
	Message string
	// Backends are, for a target that sets ServedModelName, the target's ready providers that
	// serve that name, with it: the name may not reach a provider that does not list it.
	Backends []Backend
}

// ID is the target's "namespace/name".
func (t *Target) ID() string { return t.Namespace + "/" + t.Name }

// AddEntities indexes the model entities that virtual models may target.
func (ix *Index) AddEntities(entities []inferencev1alpha1.ModelEntity) {
	if ix.entities == nil {
		ix.entities = make(map[types.NamespacedName]*inferencev1alpha1.ModelEntity, len(entities))
	}
	for i := range entities {
		e := &entities[i]
		if e.DeletionTimestamp.IsZero() {
			ix.entities[types.NamespacedName{Namespace: e.Namespace, Name: e.Name}] = e
		}
	}
}

// UsesOwnProviders tells whether e routes to providers of its own: it has no targets, or a
// target naming itself.
func UsesOwnProviders(e *inferencev1alpha1.ModelEntity) bool {
	if len(e.Spec.Targets) == 0 {
		return true
	}
	for _, t := range e.Spec.Targets {
		if isSelf(e, t) {
			return true
		}
	}
	return false
}

func isSelf(e *inferencev1alpha1.ModelEntity, t inferencev1alpha1.ModelTarget) bool {
	return t.Name == e.Name && (t.Namespace == "" || t.Namespace == e.Namespace)
}

// ResolveTargets resolves the targets of a virtual model, in spec order. A target must be the
// entity itself (its own providers), or an entity of its namespace, of the system workspace or
// of a namespace whose ReferenceGrant permits it, that has providers of its own: a target
// that has targets itself is refused, with TargetCycle when its targets lead back to e.
func (ix *Index) ResolveTargets(e *inferencev1alpha1.ModelEntity) []Target {
	out := make([]Target, 0, len(e.Spec.Targets))
	seen := make(map[types.NamespacedName]bool, len(e.Spec.Targets))
	for _, ref := range e.Spec.Targets {
		t := Target{Namespace: ref.Namespace, Name: ref.Name, Weight: 1, Order: ref.Order, ServedModelName: ref.ServedModelName}
		if t.Namespace == "" {
			t.Namespace = e.Namespace
		}
		if ref.Weight != nil {
			t.Weight = *ref.Weight
		}
		if ref.TimeToFirstToken != nil {
			t.TimeToFirstToken = ref.TimeToFirstToken.Duration
		}
		t.Self = isSelf(e, ref)
		key := types.NamespacedName{Namespace: t.Namespace, Name: t.Name}
		if seen[key] {
			// The API server refuses a name given twice alike; with the namespace written out
			// once, it cannot tell.
			t.Reason, t.Message = inferencev1alpha1.ReasonNoReadyTarget, "spec.targets names "+t.ID()+" more than once; the first counts"
			out = append(out, t)
			continue
		}
		seen[key] = true
		t.Usable, t.Ready, t.Reason, t.Message = ix.checkTarget(e, &t)
		out = append(out, t)
	}
	return out
}

func (ix *Index) checkTarget(e *inferencev1alpha1.ModelEntity, t *Target) (usable, ready bool, reason inferencev1alpha1.ConditionReason, msg string) {
	id := t.ID()
	target := e
	if !t.Self {
		if msg := ix.refusedRef(e.Namespace, t.Namespace, "ModelEntity", t.Name); msg != "" {
			return false, false, inferencev1alpha1.ReasonRefNotPermitted, msg
		}
		var ok bool
		target, ok = ix.entities[types.NamespacedName{Namespace: t.Namespace, Name: t.Name}]
		if !ok {
			return false, false, inferencev1alpha1.ReasonNoReadyTarget, "target " + id + " does not exist"
		}
		if len(target.Spec.Targets) > 0 {
			if path := ix.cycle(e, target); path != nil {
				return false, false, inferencev1alpha1.ReasonTargetCycle, "spec.targets forms a cycle: " + strings.Join(path, " → ")
			}
			return false, false, inferencev1alpha1.ReasonNoReadyTarget, "target " + id +
				" is itself a virtual model (it has spec.targets); name the entities it targets instead"
		}
	} else if e.Spec.ServedModelName == "" {
		return false, false, inferencev1alpha1.ReasonTargetCycle, "spec.targets names " + id + " itself, which has no spec.servedModelName: a cycle"
	}
	backends := ix.Resolve(target)
	if t.ServedModelName != "" {
		// The name a target sends is held to what each provider serves, as a name an entity
		// gives its providers is (check): spec.enabledModels must not be a suggestion.
		t.Backends = make([]Backend, 0, len(backends))
		for _, b := range backends {
			if !b.Ready {
				continue
			}
			p, _ := ix.Provider(b.Namespace, b.Name)
			if len(p.Status.Models) > 0 && !slices.Contains(p.Status.Models, t.ServedModelName) {
				continue
			}
			b.ServedModelName = t.ServedModelName
			t.Backends = append(t.Backends, b)
		}
		if len(t.Backends) == 0 {
			return true, false, inferencev1alpha1.ReasonNoReadyTarget, fmt.Sprintf("no ready provider of target %s serves %q (spec.targets servedModelName)", id, t.ServedModelName)
		}
		return true, true, "", ""
	}
	if slices.ContainsFunc(backends, func(b Backend) bool { return b.Ready }) {
		return true, true, "", ""
	}
	_, _, why := Summary(target, backends)
	return true, false, inferencev1alpha1.ReasonNoReadyTarget, "target " + id + " has no ready provider: " + why
}

// maxCycleWalk bounds the virtual models the search for a cycle visits from one target: the
// target is refused either way, and a tenant's thousands of virtual models must not make
// every table build quadratic.
const maxCycleWalk = 64

// cycle returns the path from e through the targets of target back to e, or nil when there is
// none within maxCycleWalk entities.
func (ix *Index) cycle(e, target *inferencev1alpha1.ModelEntity) []string {
	start := types.NamespacedName{Namespace: e.Namespace, Name: e.Name}
	seen := make(map[types.NamespacedName]bool, maxCycleWalk)
	var path []types.NamespacedName
	var walk func(x *inferencev1alpha1.ModelEntity) bool
	walk = func(x *inferencev1alpha1.ModelEntity) bool {
		key := types.NamespacedName{Namespace: x.Namespace, Name: x.Name}
		if key == start {
			return true
		}
		if seen[key] || len(seen) == maxCycleWalk {
			return false
		}
		seen[key] = true
		path = append(path, key)
		for _, ref := range x.Spec.Targets {
			if isSelf(x, ref) {
				continue
			}
			next := types.NamespacedName{Namespace: cmp.Or(ref.Namespace, x.Namespace), Name: ref.Name}
			if next == start {
				return true
			}
			if nx, ok := ix.entities[next]; ok && walk(nx) {
				return true
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if !walk(target) {
		return nil
	}
	out := []string{start.String()}
	for _, k := range path {
		out = append(out, k.String())
	}
	return append(out, start.String())
}

// TargetSummary is the Ready condition of a virtual model with these targets.
func TargetSummary(targets []Target) (metav1.ConditionStatus, inferencev1alpha1.ConditionReason, string) {
	ready := 0
	var firstProblem *Target
	for i := range targets {
		if targets[i].Ready {
			ready++
		} else if firstProblem == nil {
			firstProblem = &targets[i]
		}
	}
	switch {
	case ready > 0 && firstProblem == nil:
		return metav1.ConditionTrue, inferencev1alpha1.ReasonReady, fmt.Sprintf("%d of %d targets ready", ready, len(targets))
	case ready > 0:
		return metav1.ConditionTrue, inferencev1alpha1.ReasonReady, fmt.Sprintf("%d of %d targets ready; %s", ready, len(targets), firstProblem.Message)
	case firstProblem != nil:
		return metav1.ConditionFalse, firstProblem.Reason, firstProblem.Message
	}
	return metav1.ConditionFalse, inferencev1alpha1.ReasonNoReadyTarget, "no targets"
}

// TargetLine shows targets in one line, for kubectl: each target of an order with its share
// of that order's weight, one that is not ready marked, the later orders after "then", such
// as "llama 90%, llama-v2 10% (not ready); then system/nvidia-build". Targets of e's own
// namespace go by their name alone.
func TargetLine(e *inferencev1alpha1.ModelEntity, targets []Target) string {
	byOrder := slices.Clone(targets)
	slices.SortStableFunc(byOrder, func(a, b Target) int { return int(a.Order) - int(b.Order) })
	var sb strings.Builder
	for i := 0; i < len(byOrder); {
		j := i
		total := int32(0)
		for j < len(byOrder) && byOrder[j].Order == byOrder[i].Order {
			total += byOrder[j].Weight
			j++
		}
		if i > 0 {
			sb.WriteString("; then ")
		}
		for k := i; k < j; k++ {
			t := &byOrder[k]
			if k > i {
				sb.WriteString(", ")
			}
			if t.Namespace == e.Namespace {
				sb.WriteString(t.Name)
			} else {
				sb.WriteString(t.ID())
			}
			if j-i > 1 {
				sb.WriteString(" " + strconv.Itoa(int(math.Round(100*float64(t.Weight)/float64(total)))) + "%")
			}
			if !t.Ready {
				sb.WriteString(" (not ready)")
			}
		}
		i = j
	}
	return sb.String()
}
