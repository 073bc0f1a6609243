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

// Package snapshot turns the informer cache's ModelEntities, Providers, InferenceBudgets,
// Secrets, ReferenceGrants and namespaces' share weights into the gateway's routing table, and swaps it in whenever something that
// matters changes. It runs on every replica, leader or not: followers serve traffic too.
//
// A table is only ever replaced by a newer one built from the cache, so losing the API server
// (the cache keeps its last state) or leadership never empties it.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/resolution"
	"github.com/infergate/infergate/internal/routing"
)

// Namespaces are read for their share weight (routing.ShareWeightAnnotation), metadata only.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Builder keeps a routing.Store in step with the cluster.
type Builder struct {
	// Cache is the manager's informer cache.
	Cache cache.Cache
	// Store receives each new table.
	Store *routing.Store
	// SystemWorkspace is the namespace whose providers serve every workspace.
	SystemWorkspace string
	// GrantsAvailable tells whether the cluster serves ReferenceGrants.
	GrantsAvailable bool
	// Debounce gathers a burst of changes into one build. Default 20ms.
	Debounce time.Duration
	// Log receives build summaries and problems; keys never reach it.
	Log logr.Logger
	// Registerer receives the builder's metrics; nil skips them.
	Registerer prometheus.Registerer

	trigger     chan struct{}
	mu          sync.Mutex
	secrets     map[client.ObjectKey]bool // Secrets referenced by the last build
	duration    prometheus.Histogram
	builds      prometheus.Counter
	buildErrors prometheus.Counter
	lastSize    [2]int
}

// NeedLeaderElection is false: every replica builds its own table.
func (b *Builder) NeedLeaderElection() bool { return false }

// Start registers event handlers, builds the first table once the cache has synced, then
// rebuilds after each burst of relevant changes until ctx is done.
func (b *Builder) Start(ctx context.Context) error {
	if b.Debounce <= 0 {
		b.Debounce = 20 * time.Millisecond
	}
	b.trigger = make(chan struct{}, 1)
	if err := b.registerMetrics(); err != nil {
		return err
	}
	kinds := []client.Object{&inferencev1alpha1.ModelEntity{}, &inferencev1alpha1.Provider{}, &inferencev1alpha1.InferenceBudget{}, &corev1.Secret{}, namespaceMetadata()}
	if b.GrantsAvailable {
		kinds = append(kinds, &gatewayv1beta1.ReferenceGrant{})
	}
	for _, obj := range kinds {
		inf, err := b.Cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(b.handler(obj)); err != nil {
			return err
		}
	}
	if !b.Cache.WaitForCacheSync(ctx) {
		return errors.New("cache did not sync")
	}
	b.rebuild(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.trigger:
		}
		// Gather the rest of the burst.
		t := time.NewTimer(b.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		select {
		case <-b.trigger:
		default:
		}
		b.rebuild(ctx)
	}
}

// retryFailedBuild is how long after a failed build the builder tries again, changes or not.
const retryFailedBuild = time.Second

func (b *Builder) poke() {
	select {
	case b.trigger <- struct{}{}:
	default:
	}
}

// handler pokes the builder for changes that can alter routing: any change of entities and
// grants; for providers, a change of spec, readiness or models (not a refreshed probe time);
// for Secrets, only those that providers reference.
func (b *Builder) handler(kind client.Object) toolscache.ResourceEventHandler {
	relevant := func(obj any) bool {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if s, ok := obj.(*corev1.Secret); ok {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.secrets[client.ObjectKeyFromObject(s)]
		}
		return true
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if relevant(obj) {
				b.poke()
			}
		},
		UpdateFunc: func(old, nu any) {
			if po, ok := old.(*inferencev1alpha1.Provider); ok && !resolution.RoutingChanged(po, nu.(*inferencev1alpha1.Provider)) {
				return
			}
			if eo, ok := old.(*inferencev1alpha1.ModelEntity); ok && eo.Generation == nu.(*inferencev1alpha1.ModelEntity).Generation {
				return // status only: the builder resolves entities itself
			}
			if bo, ok := old.(*inferencev1alpha1.InferenceBudget); ok && bo.Generation == nu.(*inferencev1alpha1.InferenceBudget).Generation {
				return // status only
			}
			if no, ok := old.(*metav1.PartialObjectMetadata); ok && no.Annotations[routing.ShareWeightAnnotation] == nu.(*metav1.PartialObjectMetadata).Annotations[routing.ShareWeightAnnotation] {
				return // a namespace matters for its share weight only
			}
			if relevant(nu) {
				b.poke()
			}
		},
		DeleteFunc: func(obj any) {
			if relevant(obj) {
				b.poke()
			}
		},
	}
}

func (b *Builder) rebuild(ctx context.Context) {
	start := time.Now()
	spec, secrets, err := Build(ctx, b.Cache, b.SystemWorkspace, b.GrantsAvailable)
	if err != nil {
		// Keep serving the table we have.
		if b.buildErrors != nil {
			b.buildErrors.Inc()
		}
		b.Log.Error(err, "building the routing table failed; the previous table stays in use", "retryIn", retryFailedBuild.String())
		time.AfterFunc(retryFailedBuild, b.poke)
		return
	}
	b.mu.Lock()
	b.secrets = secrets
	b.mu.Unlock()
	table, problems := routing.New(spec, b.Store.Load())
	b.Store.Swap(table)
	elapsed := time.Since(start)
	if b.duration != nil {
		b.duration.Observe(elapsed.Seconds())
		b.builds.Inc()
	}
	for _, p := range problems {
		b.Log.V(1).Info("routing table entry left out", "problem", p.Error())
	}
	size := [2]int{len(spec.Entities), len(spec.Providers)}
	if size != b.lastSize {
		b.lastSize = size
		b.Log.Info("routing table built", "entities", size[0], "providers", size[1], "routable", table.Routable(), "took", elapsed.String())
	}
}

func (b *Builder) registerMetrics() error {
	if b.Registerer == nil {
		return nil
	}
	b.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "infergate", Subsystem: "routing", Name: "table_build_duration_seconds",
		Help:    "Time to build the routing table from the informer cache and swap it in.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	b.builds = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "infergate", Subsystem: "routing", Name: "table_builds_total",
		Help: "Routing tables built and swapped in.",
	})
	b.buildErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "infergate", Subsystem: "routing", Name: "table_build_errors_total",
		Help: "Routing table builds that failed; the previous table stayed in use.",
	})
	entities := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "infergate", Subsystem: "routing", Name: "table_entities",
		Help: "Model entities in the routing table in use, routable or not.",
	}, func() float64 { n, _ := b.Store.Load().Len(); return float64(n) })
	providers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "infergate", Subsystem: "routing", Name: "table_providers",
		Help: "Providers in the routing table in use, ready or not.",
	}, func() float64 { _, n := b.Store.Load().Len(); return float64(n) })
	for _, c := range []prometheus.Collector{b.duration, b.builds, b.buildErrors, entities, providers} {
		if err := b.Registerer.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Build reads the objects from r and returns the routing spec, and the Secrets it read keys
// from (so that their changes trigger a rebuild).
func Build(ctx context.Context, r client.Reader, systemWorkspace string, grantsAvailable bool) (routing.Spec, map[client.ObjectKey]bool, error) {
	// The builder only reads: no need for the cache to copy every object.
	noCopy := client.UnsafeDisableDeepCopy
	var entities inferencev1alpha1.ModelEntityList
	if err := r.List(ctx, &entities, noCopy); err != nil {
		return routing.Spec{}, nil, fmt.Errorf("list model entities: %w", err)
	}
	var providers inferencev1alpha1.ProviderList
	if err := r.List(ctx, &providers, noCopy); err != nil {
		return routing.Spec{}, nil, fmt.Errorf("list providers: %w", err)
	}
	var budgets inferencev1alpha1.InferenceBudgetList
	if err := r.List(ctx, &budgets, noCopy); err != nil {
		return routing.Spec{}, nil, fmt.Errorf("list inference budgets: %w", err)
	}
	namespaces := metav1.PartialObjectMetadataList{}
	namespaces.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := r.List(ctx, &namespaces, noCopy); err != nil {
		return routing.Spec{}, nil, fmt.Errorf("list namespaces: %w", err)
	}
	var grants gatewayv1beta1.ReferenceGrantList
	if grantsAvailable {
		if err := r.List(ctx, &grants, noCopy); err != nil {
			return routing.Spec{}, nil, fmt.Errorf("list reference grants: %w", err)
		}
	}

	spec := routing.Spec{Providers: make([]routing.ProviderSpec, 0, len(providers.Items)), Entities: make([]routing.EntitySpec, 0, len(entities.Items))}
	secrets := map[client.ObjectKey]bool{}
	spec.ShareWeights = shareWeights(namespaces.Items)
	for i := range budgets.Items {
		if b := &budgets.Items[i]; b.DeletionTimestamp.IsZero() {
			spec.Budgets = append(spec.Budgets, Budget(b, systemWorkspace))
		}
	}
	for i := range providers.Items {
		p := &providers.Items[i]
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		ps, err := providerSpec(ctx, r, p)
		if err != nil {
			return routing.Spec{}, nil, err
		}
		if ref := p.Spec.APIKeySecretRef; ref != nil {
			secrets[client.ObjectKey{Namespace: p.Namespace, Name: ref.Name}] = true
		}
		spec.Providers = append(spec.Providers, ps)
	}

	ix := resolution.NewIndex(providers.Items, grants.Items, systemWorkspace, grantsAvailable)
	ix.AddEntities(entities.Items)
	for i := range entities.Items {
		e := &entities.Items[i]
		if !e.DeletionTimestamp.IsZero() {
			continue
		}
		es := routing.EntitySpec{Workspace: e.Namespace, Name: e.Name, Created: e.CreationTimestamp.Time, RetryOn: retryOn(e.Spec.RetryOn),
			Balancing: balancing(e.Spec.LoadBalancing), Paths: e.Spec.Paths, Priority: priority(e.Spec.Priority), Queue: queueSpec(e.Spec.Queue),
			Affinity: affinity(e.Spec.TargetAffinity)}
		if resolution.UsesOwnProviders(e) {
			for _, be := range ix.Resolve(e) {
				if !be.Ready {
					continue
				}
				es.Backends = append(es.Backends, routing.BackendSpec{Workspace: be.Namespace, Name: be.Name, ServedModel: be.ServedModelName, Weight: int(be.Weight)})
			}
		}
		if len(e.Spec.Targets) > 0 {
			es.Targets = []routing.TargetSpec{}
			for _, t := range ix.ResolveTargets(e) {
				// A target without a ready provider now may have one in the next table; one
				// that is refused (not permitted, missing, a virtual model) has none.
				if !t.Usable {
					continue
				}
				ts := routing.TargetSpec{Workspace: t.Namespace, Name: t.Name, Weight: int(t.Weight), Order: int(t.Order), TimeToFirstToken: t.TimeToFirstToken}
				if t.ServedModelName != "" {
					ts.Backends = []routing.BackendSpec{}
					for _, be := range t.Backends {
						ts.Backends = append(ts.Backends, routing.BackendSpec{Workspace: be.Namespace, Name: be.Name, ServedModel: be.ServedModelName, Weight: int(be.Weight)})
					}
				}
				es.Targets = append(es.Targets, ts)
			}
		}
		spec.Entities = append(spec.Entities, es)
	}
	return spec, secrets, nil
}

// retryOn turns a ModelEntity's retryOn into the routing table's set.
func retryOn(conditions []inferencev1alpha1.RetryCondition) routing.RetryOn {
	var r routing.RetryOn
	for _, c := range conditions {
		switch c {
		case inferencev1alpha1.RetryOnGatewayError:
			r |= routing.RetryGatewayError
		case inferencev1alpha1.RetryOnTimeout:
			r |= routing.RetryTimeout
		case inferencev1alpha1.RetryOnReset:
			r |= routing.RetryReset
		}
	}
	return r
}

// balancing turns a ModelEntity's loadBalancing into the routing table's.
func affinity(a inferencev1alpha1.TargetAffinity) routing.Affinity {
	switch a {
	case inferencev1alpha1.TargetAffinityCaller:
		return routing.AffinityCaller
	case inferencev1alpha1.TargetAffinityConversation:
		return routing.AffinityConversation
	}
	return routing.AffinityNone
}

func balancing(b inferencev1alpha1.LoadBalancing) routing.Balancing {
	switch b {
	case inferencev1alpha1.LoadBalancingLeastRequest:
		return routing.LeastRequest
	case inferencev1alpha1.LoadBalancingRoundRobin:
		return routing.RoundRobin
	case inferencev1alpha1.LoadBalancingFailover:
		return routing.Failover
	}
	return routing.CacheAware
}

// providerSpec turns a Provider and its key into what the gateway needs.
func providerSpec(ctx context.Context, r client.Reader, p *inferencev1alpha1.Provider) (routing.ProviderSpec, error) {
	ps := routing.ProviderSpec{
		Workspace: p.Namespace,
		Name:      p.Name,
		BaseURL:   resolution.ProviderURL(p),
		Ready:     resolution.ProviderReady(p),
	}
	if ref := p.Spec.APIKeySecretRef; ref != nil {
		key, found, err := resolution.ReadKey(ctx, r, p.Namespace, ref)
		if err != nil {
			return ps, err
		}
		if found {
			ps.AuthHeader, ps.AuthValue = resolution.AuthHeader(p, key)
		} else {
			ps.MissingCredentials, ps.Ready = true, false
		}
	}
	for _, h := range p.Spec.DefaultExtraHeaders {
		ps.DefaultHeaders = append(ps.DefaultHeaders, routing.Header{Name: h.Name, Value: h.Value})
	}
	for _, h := range p.Spec.RequiredExtraHeaders {
		ps.RequiredHeaders = append(ps.RequiredHeaders, routing.Header{Name: h.Name, Value: h.Value})
	}
	ps.DefaultBody = bodyFields(p.Spec.DefaultExtraBody)
	ps.RequiredBody = bodyFields(p.Spec.RequiredExtraBody)
	if t := p.Spec.Timeouts; t != nil {
		ps.Timeouts = routing.Timeouts{Connect: duration(t.Connect), ResponseHeader: duration(t.ResponseHeader), StreamIdle: duration(t.StreamIdle)}
	}
	if u := resolution.MetricsURL(p); u != "" {
		ps.Metrics = &routing.MetricsSpec{URL: u, Interval: duration(p.Spec.Metrics.Interval)}
	}
	ps.Queue = queueSpec(p.Spec.Queue)
	return ps, nil
}

func bodyFields(fields []inferencev1alpha1.BodyField) []routing.BodyField {
	out := make([]routing.BodyField, 0, len(fields))
	for _, f := range fields {
		out = append(out, routing.BodyField{Name: f.Name, Value: rawJSON(f.Value)})
	}
	return out
}

func rawJSON(v apiextensionsv1.JSON) []byte { return v.Raw }

func duration(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}

// priority turns a ModelEntity's priority into the queue's class.
func priority(p inferencev1alpha1.Priority) flow.Class {
	switch p {
	case inferencev1alpha1.PriorityCritical:
		return flow.Critical
	case inferencev1alpha1.PrioritySheddable:
		return flow.Sheddable
	}
	return flow.Standard
}

// queueSpec turns a spec.queue into the routing table's bounds; unset fields stay unset.
func queueSpec(q *inferencev1alpha1.QueuePolicy) routing.QueueSpec {
	var out routing.QueueSpec
	if q == nil {
		return out
	}
	if q.MaxTime != nil {
		d := q.MaxTime.Duration
		out.MaxTime = &d
	}
	if q.MaxLength != nil {
		n := int(*q.MaxLength)
		out.MaxLength = &n
	}
	return out
}

// namespaceMetadata is the informer's object for namespaces: their metadata only, which
// holds the share weight.
func namespaceMetadata() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}

// shareWeights reads the workspaces' routing.ShareWeightAnnotation; a value that is not a
// number from 0.001 to 1000 is ignored (weight 1).
func shareWeights(namespaces []metav1.PartialObjectMetadata) map[string]float64 {
	var out map[string]float64
	for i := range namespaces {
		v, ok := namespaces[i].Annotations[routing.ShareWeightAnnotation]
		if !ok {
			continue
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(w >= 0.001 && w <= 1000) {
			continue
		}
		if out == nil {
			out = map[string]float64{}
		}
		out[namespaces[i].Name] = w
	}
	return out
}
