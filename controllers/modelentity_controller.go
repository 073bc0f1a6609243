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
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/resolution"
)

// Field indexes of ModelEntities.
const (
	indexEntityServedModel = "spec.servedModelName"
	indexEntityProviderRef = "spec.providers"
	indexEntityTargetRef   = "spec.targets"
)

// +kubebuilder:rbac:groups=inference.infergate.dev,resources=modelentities,verbs=get;list;watch
// +kubebuilder:rbac:groups=inference.infergate.dev,resources=modelentities/status,verbs=patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=referencegrants,verbs=get;list;watch

// ModelEntityReconciler resolves the providers of a ModelEntity and reports them in status.
type ModelEntityReconciler struct {
	client.Client
	Recorder        recorder.EventRecorder
	SystemWorkspace string
	// GrantsAvailable tells whether the cluster serves Gateway API ReferenceGrants.
	GrantsAvailable bool
}

// Reconcile resolves one entity.
func (r *ModelEntityReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var e inferencev1alpha1.ModelEntity
	if err := r.Get(ctx, req.NamespacedName, &e); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !e.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	ix, err := r.index(ctx, &e)
	if err != nil {
		return ctrl.Result{}, err
	}
	var backends []resolution.Backend
	if resolution.UsesOwnProviders(&e) {
		backends = ix.Resolve(&e)
	}

	next := e.Status.DeepCopy()
	next.ObservedGeneration = e.Generation
	next.ID = e.Namespace + "/" + e.Name
	next.Providers = nil
	next.ReadyProviders = 0
	for _, b := range backends {
		next.Providers = append(next.Providers, inferencev1alpha1.ResolvedProvider{
			Namespace: b.Namespace, Name: b.Name, ServedModelName: b.ServedModelName, Weight: b.Weight, Ready: b.Ready,
		})
		if b.Ready {
			next.ReadyProviders++
		}
	}
	status, reason, message := resolution.Summary(&e, backends)
	next.Targets, next.TargetSummary = nil, ""
	if len(e.Spec.Targets) > 0 {
		targets := ix.ResolveTargets(&e)
		for _, t := range targets {
			next.Targets = append(next.Targets, inferencev1alpha1.ResolvedTarget{
				Namespace: t.Namespace, Name: t.Name, Weight: t.Weight, Order: t.Order, Ready: t.Ready, Message: t.Message,
			})
		}
		next.TargetSummary = resolution.TargetLine(&e, targets)
		status, reason, message = resolution.TargetSummary(targets)
	}
	cond := readyCondition(status, reason, message, e.Generation)
	transition := readyChanged(e.Status.Conditions, cond)
	meta.SetStatusCondition(&next.Conditions, cond)
	if !equality.Semantic.DeepEqual(&e.Status, next) {
		before := e.DeepCopy()
		e.Status = *next
		stale, err := patchStatus(ctx, r.Client, &e, before)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("patch status of model entity %s: %w", req, err)
		}
		if stale {
			return ctrl.Result{RequeueAfter: staleRetry}, nil
		}
	}
	if transition {
		r.Recorder.Eventf(&e, nil, eventType(cond.Status), cond.Reason, "Resolve", "%s", cond.Message)
		log.FromContext(ctx).Info("model entity readiness changed", "ready", cond.Status, "reason", cond.Reason, "readyProviders", next.ReadyProviders)
	}
	return ctrl.Result{}, nil
}

// index reads what resolving e needs: the providers of its namespace and of the system
// workspace, those it names elsewhere, the entities of the namespaces its targets are in (and
// the providers there, for their readiness), and the ReferenceGrants of those namespaces.
func (r *ModelEntityReconciler) index(ctx context.Context, e *inferencev1alpha1.ModelEntity) (*resolution.Index, error) {
	namespaces := []string{e.Namespace}
	if r.SystemWorkspace != "" && r.SystemWorkspace != e.Namespace {
		namespaces = append(namespaces, r.SystemWorkspace)
	}
	for _, ref := range e.Spec.Providers {
		if ref.Namespace != "" && !slices.Contains(namespaces, ref.Namespace) {
			namespaces = append(namespaces, ref.Namespace)
		}
	}
	var entities []inferencev1alpha1.ModelEntity
	if len(e.Spec.Targets) > 0 {
		// Targets are resolved against every entity, so that a cycle through other namespaces
		// shows; the cache holds them all anyway, and they are only read.
		var list inferencev1alpha1.ModelEntityList
		if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("list model entities: %w", err)
		}
		entities = list.Items
		// A target's readiness is that of its providers: those of its namespace and the ones
		// it names elsewhere.
		add := func(ns string) {
			if ns != "" && !slices.Contains(namespaces, ns) {
				namespaces = append(namespaces, ns)
			}
		}
		for _, t := range e.Spec.Targets {
			ns := cmp.Or(t.Namespace, e.Namespace)
			add(ns)
			for i := range entities {
				if te := &entities[i]; te.Namespace == ns && te.Name == t.Name {
					for _, ref := range te.Spec.Providers {
						add(ref.Namespace)
					}
				}
			}
		}
	}
	var providers []inferencev1alpha1.Provider
	var grants []gatewayv1beta1.ReferenceGrant
	for _, ns := range namespaces {
		var list inferencev1alpha1.ProviderList
		if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("list providers in %s: %w", ns, err)
		}
		providers = append(providers, list.Items...)
		if r.GrantsAvailable && ns != e.Namespace {
			var gl gatewayv1beta1.ReferenceGrantList
			if err := r.List(ctx, &gl, client.InNamespace(ns)); err != nil {
				return nil, fmt.Errorf("list reference grants in %s: %w", ns, err)
			}
			grants = append(grants, gl.Items...)
		}
	}
	ix := resolution.NewIndex(providers, grants, r.SystemWorkspace, r.GrantsAvailable)
	ix.AddEntities(entities)
	return ix, nil
}

// SetupWithManager registers the controller. A Provider's change reconciles the entities that
// name it and those that may serve from it implicitly (same served model, in its namespace,
// or anywhere for a provider of the system workspace); a ReferenceGrant's change reconciles
// the entities of the namespaces it lets in.
func (r *ModelEntityReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&inferencev1alpha1.ModelEntity{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&inferencev1alpha1.Provider{}, handler.EnqueueRequestsFromMapFunc(r.entitiesOfProvider),
			builder.WithPredicates(ProviderRoutingChanged{})).
		// A target's readiness, spec or existence changes the virtual models that name it.
		Watches(&inferencev1alpha1.ModelEntity{}, handler.EnqueueRequestsFromMapFunc(r.entitiesTargeting)).
		Named("modelentity")
	if r.GrantsAvailable {
		b = b.Watches(&gatewayv1beta1.ReferenceGrant{}, handler.EnqueueRequestsFromMapFunc(r.entitiesOfGrant))
	}
	return b.Complete(r)
}

func (r *ModelEntityReconciler) entitiesOfProvider(ctx context.Context, o client.Object) []ctrl.Request {
	p := o.(*inferencev1alpha1.Provider)
	seen := map[types.NamespacedName]bool{}
	var reqs []ctrl.Request
	add := func(items []inferencev1alpha1.ModelEntity, filter func(*inferencev1alpha1.ModelEntity) bool) {
		for i := range items {
			e := &items[i]
			key := types.NamespacedName{Namespace: e.Namespace, Name: e.Name}
			if !seen[key] && filter(e) {
				seen[key] = true
				reqs = append(reqs, ctrl.Request{NamespacedName: key})
			}
		}
	}
	var named inferencev1alpha1.ModelEntityList
	if err := r.List(ctx, &named, client.MatchingFields{indexEntityProviderRef: p.Namespace + "/" + p.Name}); err != nil {
		log.FromContext(ctx).Error(err, "list model entities naming a provider", "provider", p.Namespace+"/"+p.Name)
	}
	add(named.Items, func(*inferencev1alpha1.ModelEntity) bool { return true })
	for _, model := range p.Status.Models {
		var serving inferencev1alpha1.ModelEntityList
		opts := []client.ListOption{client.MatchingFields{indexEntityServedModel: model}}
		if p.Namespace != r.SystemWorkspace {
			opts = append(opts, client.InNamespace(p.Namespace))
		}
		if err := r.List(ctx, &serving, opts...); err != nil {
			log.FromContext(ctx).Error(err, "list model entities of a model", "model", model)
			continue
		}
		add(serving.Items, func(e *inferencev1alpha1.ModelEntity) bool { return len(e.Spec.Providers) == 0 })
	}
	return reqs
}

// entitiesTargeting returns the virtual models that name o as a target.
func (r *ModelEntityReconciler) entitiesTargeting(ctx context.Context, o client.Object) []ctrl.Request {
	var list inferencev1alpha1.ModelEntityList
	if err := r.List(ctx, &list, client.MatchingFields{indexEntityTargetRef: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "list model entities targeting an entity", "entity", o.GetNamespace()+"/"+o.GetName())
		return nil
	}
	reqs := make([]ctrl.Request, 0, len(list.Items))
	for _, e := range list.Items {
		if e.Namespace != o.GetNamespace() || e.Name != o.GetName() {
			reqs = append(reqs, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: e.Namespace, Name: e.Name}})
		}
	}
	return reqs
}

func (r *ModelEntityReconciler) entitiesOfGrant(ctx context.Context, o client.Object) []ctrl.Request {
	g := o.(*gatewayv1beta1.ReferenceGrant)
	var reqs []ctrl.Request
	for _, from := range g.Spec.From {
		if string(from.Group) != inferencev1alpha1.GroupVersion.Group || from.Kind != "ModelEntity" {
			continue
		}
		var list inferencev1alpha1.ModelEntityList
		if err := r.List(ctx, &list, client.InNamespace(string(from.Namespace))); err != nil {
			log.FromContext(ctx).Error(err, "list model entities", "namespace", from.Namespace)
			continue
		}
		for _, e := range list.Items {
			reqs = append(reqs, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: e.Namespace, Name: e.Name}})
		}
	}
	return reqs
}

// ProviderRoutingChanged passes Provider events that can change routing (see
// resolution.RoutingChanged).
type ProviderRoutingChanged struct{}

// Update compares the parts of a Provider that routing depends on.
func (ProviderRoutingChanged) Update(e event.UpdateEvent) bool {
	old, okOld := e.ObjectOld.(*inferencev1alpha1.Provider)
	nu, okNew := e.ObjectNew.(*inferencev1alpha1.Provider)
	if !okOld || !okNew {
		return true
	}
	return resolution.RoutingChanged(old, nu)
}

// Create passes.
func (ProviderRoutingChanged) Create(event.CreateEvent) bool { return true }

// Delete passes.
func (ProviderRoutingChanged) Delete(event.DeleteEvent) bool { return true }

// Generic passes.
func (ProviderRoutingChanged) Generic(event.GenericEvent) bool { return true }
