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

// Package resolution decides which providers serve a ModelEntity, from the API objects alone.
// The ModelEntity controller reports the result in status; the snapshot builder on every
// replica computes the same result from its cache to build the routing table, so that routing
// does not wait for the leader to write status.
package resolution

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

// ProviderURL returns a provider's base URL: spec.url, or the cluster DNS name of its Service.
func ProviderURL(p *inferencev1alpha1.Provider) string {
	if p.Spec.URL != "" {
		return strings.TrimRight(p.Spec.URL, "/")
	}
	if s := p.Spec.Service; s != nil {
		scheme := s.Scheme
		if scheme == "" {
			scheme = "http"
		}
		return scheme + "://" + s.Name + "." + p.Namespace + ".svc:" + strconv.Itoa(int(s.Port)) + strings.TrimRight(s.Path, "/")
	}
	return ""
}

// MetricsURL is where a provider's model server metrics are read (spec.metrics): the
// provider's scheme and host, the metrics port when set, and the metrics path. It is "" when
// spec.metrics is not set.
func MetricsURL(p *inferencev1alpha1.Provider) string {
	m := p.Spec.Metrics
	if m == nil {
		return ""
	}
	u, err := url.Parse(ProviderURL(p))
	if err != nil || u.Host == "" {
		return ""
	}
	if m.Port != nil {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(int(*m.Port)))
	}
	u.Path, u.RawPath = m.Path, ""
	if u.Path == "" {
		u.Path = "/metrics"
	}
	return u.String()
}

// ReadKey reads the API key a provider references. A missing Secret or key is not an error:
// found is false.
func ReadKey(ctx context.Context, r client.Reader, namespace string, ref *inferencev1alpha1.SecretKeyReference) (key string, found bool, err error) {
	var secret corev1.Secret
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("read Secret %s/%s: %w", namespace, ref.Name, err)
	}
	// Surrounding whitespace is no part of a key: `kubectl create secret --from-file` keeps the
	// file's trailing newline, which would make every request fail.
	key = strings.TrimSpace(string(secret.Data[ref.Key]))
	return key, key != "", nil
}

// AuthHeader returns the header name and value that carry key for p: by default
// "Authorization: Bearer <key>".
func AuthHeader(p *inferencev1alpha1.Provider, key string) (name, value string) {
	if h := p.Spec.AuthHeader; h != nil {
		return h.Name, h.Prefix + key
	}
	return "Authorization", "Bearer " + key
}

// ProviderReady reports whether a provider may receive traffic: its Ready condition is True,
// and both its status and that condition are of its current generation. A Provider whose spec
// changed (a new URL, Service or key) is not ready until the controller has probed the new
// spec: its key must not travel to an address nobody has checked.
func ProviderReady(p *inferencev1alpha1.Provider) bool {
	c := meta.FindStatusCondition(p.Status.Conditions, inferencev1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && probedCurrentSpec(p, c)
}

// probedCurrentSpec reports whether the status and the Ready condition c were written for
// the provider's current generation.
func probedCurrentSpec(p *inferencev1alpha1.Provider, c *metav1.Condition) bool {
	return p.Status.ObservedGeneration == p.Generation && c.ObservedGeneration == p.Generation
}

// RoutingChanged reports whether a Provider update can change routing: a new spec, a change of
// readiness or of served models, or the start of its deletion. A status that only refreshes its
// probe time cannot.
func RoutingChanged(old, nu *inferencev1alpha1.Provider) bool {
	return old.Generation != nu.Generation ||
		ProviderReady(old) != ProviderReady(nu) ||
		!slices.Equal(old.Status.Models, nu.Status.Models) ||
		old.DeletionTimestamp.IsZero() != nu.DeletionTimestamp.IsZero()
}

// Backend is a provider resolved for a ModelEntity.
type Backend struct {
	Namespace, Name string
	ServedModelName string
	Weight          int32
	// Ready tells whether requests may go to this provider.
	Ready bool
	// Reason and Message say why a listed provider is not ready.
	Reason  inferencev1alpha1.ConditionReason
	Message string
}

// Index holds the providers and ReferenceGrants of the cluster for resolution.
type Index struct {
	systemWorkspace string
	// grantsAvailable is false when the cluster has no ReferenceGrant CRD.
	grantsAvailable bool
	providers       map[types.NamespacedName]*inferencev1alpha1.Provider
	// serving maps namespace and model to the Ready providers of that namespace that serve it.
	serving map[nsModel][]*inferencev1alpha1.Provider
	grants  map[string][]*gatewayv1beta1.ReferenceGrant
	// entities are the model entities virtual models may target (AddEntities).
	entities map[types.NamespacedName]*inferencev1alpha1.ModelEntity
}

type nsModel struct{ namespace, model string }

// NewIndex indexes providers and grants. grantsAvailable tells whether the cluster serves
// ReferenceGrants at all.
func NewIndex(providers []inferencev1alpha1.Provider, grants []gatewayv1beta1.ReferenceGrant, systemWorkspace string, grantsAvailable bool) *Index {
	ix := &Index{
		systemWorkspace: systemWorkspace,
		grantsAvailable: grantsAvailable,
		providers:       make(map[types.NamespacedName]*inferencev1alpha1.Provider, len(providers)),
		serving:         map[nsModel][]*inferencev1alpha1.Provider{},
		grants:          map[string][]*gatewayv1beta1.ReferenceGrant{},
	}
	for i := range providers {
		p := &providers[i]
		ix.providers[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
		if !ProviderReady(p) {
			continue
		}
		for _, m := range p.Status.Models {
			k := nsModel{p.Namespace, m}
			ix.serving[k] = append(ix.serving[k], p)
		}
	}
	for i := range grants {
		g := &grants[i]
		ix.grants[g.Namespace] = append(ix.grants[g.Namespace], g)
	}
	return ix
}

// Provider returns an indexed provider.
func (ix *Index) Provider(namespace, name string) (*inferencev1alpha1.Provider, bool) {
	p, ok := ix.providers[types.NamespacedName{Namespace: namespace, Name: name}]
	return p, ok
}

// Resolve returns the providers of an entity: the ones it lists, each with its readiness, or,
// when it lists none, every Ready provider in its namespace or in the system workspace whose
// served models include the entity's served model name.
func (ix *Index) Resolve(e *inferencev1alpha1.ModelEntity) []Backend {
	if len(e.Spec.Providers) == 0 {
		var out []Backend
		for _, ns := range ix.workspacesOf(e.Namespace) {
			for _, p := range ix.serving[nsModel{ns, e.Spec.ServedModelName}] {
				out = append(out, Backend{Namespace: p.Namespace, Name: p.Name, ServedModelName: e.Spec.ServedModelName, Weight: 1, Ready: true})
			}
		}
		slices.SortFunc(out, func(a, b Backend) int {
			if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
				return c
			}
			return strings.Compare(a.Name, b.Name)
		})
		return out
	}
	out := make([]Backend, 0, len(e.Spec.Providers))
	for _, ref := range e.Spec.Providers {
		b := Backend{Namespace: ref.Namespace, Name: ref.Name, ServedModelName: ref.ServedModelName, Weight: 1}
		if b.Namespace == "" {
			b.Namespace = e.Namespace
		}
		if b.ServedModelName == "" {
			b.ServedModelName = e.Spec.ServedModelName
		}
		if ref.Weight != nil {
			b.Weight = *ref.Weight
		}
		b.Ready, b.Reason, b.Message = ix.check(e, b)
		out = append(out, b)
	}
	return out
}

func (ix *Index) workspacesOf(ns string) []string {
	if ns == ix.systemWorkspace || ix.systemWorkspace == "" {
		return []string{ns}
	}
	return []string{ns, ix.systemWorkspace}
}

// check tells whether an explicitly listed provider can serve the entity.
func (ix *Index) check(e *inferencev1alpha1.ModelEntity, b Backend) (bool, inferencev1alpha1.ConditionReason, string) {
	id := b.Namespace + "/" + b.Name
	if msg := ix.refusedRef(e.Namespace, b.Namespace, "Provider", b.Name); msg != "" {
		return false, inferencev1alpha1.ReasonRefNotPermitted, msg
	}
	p, ok := ix.Provider(b.Namespace, b.Name)
	if !ok {
		return false, inferencev1alpha1.ReasonProviderNotFound, "provider " + id + " does not exist"
	}
	if !ProviderReady(p) {
		c := meta.FindStatusCondition(p.Status.Conditions, inferencev1alpha1.ConditionReady)
		reason := "not Ready"
		switch {
		case c != nil && !probedCurrentSpec(p, c):
			return false, inferencev1alpha1.ReasonNoReadyProvider, fmt.Sprintf("provider %s has not been probed since its spec changed "+
				"(generation %d); it is used once the manager has probed it and found it Ready", id, p.Generation)
		case c != nil && c.Reason != "":
			reason = c.Reason
		}
		return false, inferencev1alpha1.ReasonNoReadyProvider, "provider " + id + " is " + reason
	}
	if len(p.Status.Models) > 0 && !slices.Contains(p.Status.Models, b.ServedModelName) {
		return false, inferencev1alpha1.ReasonNoReadyProvider, fmt.Sprintf("provider %s does not serve %q (it serves %d other models; see its status.models)", id, b.ServedModelName, len(p.Status.Models))
	}
	return true, "", ""
}

// refusedRef says why a ModelEntity of namespace from may not refer to the object of kind
// (Provider or ModelEntity) ns/name, or "" when it may: the object is in its own namespace or
// the system workspace, or a ReferenceGrant in ns permits it.
func (ix *Index) refusedRef(from, ns, kind, name string) string {
	if ns == from || ns == ix.systemWorkspace || ix.permitted(from, ns, kind, name) {
		return ""
	}
	what := "provider "
	if kind == "ModelEntity" {
		what = "target "
	}
	if !ix.grantsAvailable {
		return what + ns + "/" + name + " is in another namespace and the cluster has no ReferenceGrant CRD (Gateway API) to allow it"
	}
	return what + ns + "/" + name + " is in another namespace: create a ReferenceGrant in " + ns +
		" that allows ModelEntity from " + from + " to " + kind
}

// permitted reports whether a ReferenceGrant in toNamespace lets ModelEntities of
// fromNamespace refer to the object of kind (Provider or ModelEntity) and name there.
func (ix *Index) permitted(fromNamespace, toNamespace, kind, name string) bool {
	for _, g := range ix.grants[toNamespace] {
		if !grantsFrom(g, fromNamespace) {
			continue
		}
		for _, to := range g.Spec.To {
			if string(to.Group) == inferencev1alpha1.GroupVersion.Group && string(to.Kind) == kind &&
				(to.Name == nil || string(*to.Name) == name) {
				return true
			}
		}
	}
	return false
}

func grantsFrom(g *gatewayv1beta1.ReferenceGrant, namespace string) bool {
	for _, from := range g.Spec.From {
		if string(from.Group) == inferencev1alpha1.GroupVersion.Group && from.Kind == "ModelEntity" && string(from.Namespace) == namespace {
			return true
		}
	}
	return false
}

// Summary is the Ready condition of an entity with these backends.
func Summary(e *inferencev1alpha1.ModelEntity, backends []Backend) (metav1.ConditionStatus, inferencev1alpha1.ConditionReason, string) {
	ready := 0
	var firstProblem *Backend
	for i := range backends {
		if backends[i].Ready {
			ready++
		} else if firstProblem == nil {
			firstProblem = &backends[i]
		}
	}
	switch {
	case ready > 0 && firstProblem == nil:
		return metav1.ConditionTrue, inferencev1alpha1.ReasonReady, fmt.Sprintf("%d of %d providers ready", ready, len(backends))
	case ready > 0:
		return metav1.ConditionTrue, inferencev1alpha1.ReasonReady, fmt.Sprintf("%d of %d providers ready; %s", ready, len(backends), firstProblem.Message)
	case firstProblem != nil:
		return metav1.ConditionFalse, firstProblem.Reason, firstProblem.Message
	default:
		return metav1.ConditionFalse, inferencev1alpha1.ReasonNoReadyProvider,
			fmt.Sprintf("no Ready provider in %s or the system workspace serves %q", e.Namespace, e.Spec.ServedModelName)
	}
}
