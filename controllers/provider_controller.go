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
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/discovery"
	"github.com/infergate/infergate/internal/resolution"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/scrape"
)

// Field indexes of Providers.
const (
	indexProviderSecret  = "spec.apiKeySecretRef.name"
	indexProviderService = "spec.service.name"
)

// Probing.
const (
	defaultProbeInterval = 30 * time.Second
	// firstRetry is the wait after the first failed probe; it doubles up to the probe interval.
	firstRetry = 2 * time.Second
	// probeTimeout bounds one probe.
	probeTimeout = 10 * time.Second
	// refreshProbeTime is how long an unchanged status keeps its lastProbeTime.
	refreshProbeTime = 5 * time.Minute
)

// +kubebuilder:rbac:groups=inference.infergate.dev,resources=providers,verbs=get;list;watch
// +kubebuilder:rbac:groups=inference.infergate.dev,resources=providers/status,verbs=patch
// Secrets are read from the manager's cache only (all, or those of --secret-label-selector).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// ProviderReconciler resolves a Provider's URL and key, probes the upstream on an interval and
// reports what it serves.
type ProviderReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Prober   *discovery.Prober
	// MetricsClient reads the metrics of providers that have spec.metrics, to report in the
	// MetricsAvailable condition whether they can be read (scrape.NewClient).
	MetricsClient *http.Client
	// SecretLabels, when set, are the labels of the only Secrets the manager reads
	// (--secret-label-selector): a key in a Secret without them is not found, and the
	// Provider's condition says which labels to add.
	SecretLabels map[string]string

	// failures counts consecutive failed probes per provider, for the retry backoff.
	failures sync.Map // types.NamespacedName → int
}

// Reconcile probes one provider and writes its status.
func (r *ProviderReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var p inferencev1alpha1.Provider
	if err := r.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			r.failures.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	next := p.Status.DeepCopy()
	next.ObservedGeneration = p.Generation
	next.URL = resolution.ProviderURL(&p)
	result, metricsCond, err := r.probe(ctx, &p)
	if err != nil {
		return ctrl.Result{}, err
	}
	cond := readyCondition(metav1.ConditionFalse, result.Reason, result.Message, p.Generation)
	if result.Ready {
		cond.Status = metav1.ConditionTrue
		next.Models = result.Models
	} else if result.Reason != inferencev1alpha1.ReasonUnreachable {
		// Unreachable may be a blip: keep the models last seen. Anything else is a
		// configuration problem: what the provider served no longer counts.
		next.Models = nil
	}
	transition := readyChanged(p.Status.Conditions, cond)
	meta.SetStatusCondition(&next.Conditions, cond)
	switch {
	case p.Spec.Metrics == nil:
		meta.RemoveStatusCondition(&next.Conditions, inferencev1alpha1.ConditionMetricsAvailable)
	case metricsCond != nil:
		meta.SetStatusCondition(&next.Conditions, *metricsCond)
	}

	now := metav1.Now()
	changed := !equality.Semantic.DeepEqual(&p.Status, next)
	if changed || p.Status.LastProbeTime == nil || now.Sub(p.Status.LastProbeTime.Time) > refreshProbeTime {
		next.LastProbeTime = &now
		before := p.DeepCopy()
		p.Status = *next
		stale, err := patchStatus(ctx, r.Client, &p, before)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("patch status of provider %s: %w", req, err)
		}
		if stale {
			return ctrl.Result{RequeueAfter: staleRetry}, nil
		}
	}
	if transition {
		r.Recorder.Eventf(&p, nil, eventType(cond.Status), cond.Reason, "Probe", "%s", cond.Message)
		logger.Info("provider readiness changed", "ready", cond.Status, "reason", cond.Reason, "models", len(next.Models))
	}
	return ctrl.Result{RequeueAfter: r.nextProbe(&p, req.NamespacedName, result.Ready)}, nil
}

// probe resolves the Service and the key, then probes the upstream and, when it is ready and
// spec.metrics is set, reads its metrics once. Missing objects are results, not errors: they
// are reported in the condition. The metrics condition is nil when the metrics were not read.
func (r *ProviderReconciler) probe(ctx context.Context, p *inferencev1alpha1.Provider) (discovery.Result, *metav1.Condition, error) {
	result, req, err := r.probeUpstream(ctx, p)
	if err != nil || !result.Ready || p.Spec.Metrics == nil || r.MetricsClient == nil {
		return result, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	target := scrape.Target{URL: resolution.MetricsURL(p), AuthHeader: req.AuthHeader, AuthValue: req.AuthValue, HopID: r.Prober.HopID}
	cond := metav1.Condition{Type: inferencev1alpha1.ConditionMetricsAvailable, Status: metav1.ConditionTrue, ObservedGeneration: p.Generation}
	report, engine, err := scrape.Fetch(ctx, r.MetricsClient, target)
	switch {
	case errors.Is(err, scrape.ErrUnknownMetrics):
		cond.Status, cond.Reason = metav1.ConditionFalse, string(inferencev1alpha1.ReasonUnknownMetrics)
		cond.Message = "GET " + target.URL + " holds no queue metrics of a known engine (vLLM, NIM, SGLang, TGI): the gateway balances this provider on its own signals; check spec.metrics.path"
	case err != nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, string(inferencev1alpha1.ReasonScrapeFailed)
		cond.Message = err.Error() + ": the gateway balances this provider on its own signals"
	default:
		what := "requests waiting and running"
		if report.HasKVCacheUsage {
			what = "requests waiting and running, and KV cache usage"
		}
		interval := routing.DefaultMetricsInterval
		if i := p.Spec.Metrics.Interval; i != nil && i.Duration > 0 {
			interval = i.Duration
		}
		cond.Reason = string(inferencev1alpha1.ReasonMetricsRead)
		cond.Message = fmt.Sprintf("every gateway replica reads %s metrics (%s) from %s every %s", engine.Name, what, target.URL, interval)
	}
	return result, &cond, nil
}

// probeUpstream resolves the Service and the key, then probes the upstream.
func (r *ProviderReconciler) probeUpstream(ctx context.Context, p *inferencev1alpha1.Provider) (discovery.Result, discovery.Request, error) {
	if s := p.Spec.Service; s != nil {
		var svc corev1.Service
		err := r.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: s.Name}, &svc)
		switch {
		case apierrors.IsNotFound(err):
			return discovery.Result{Reason: inferencev1alpha1.ReasonServiceNotFound,
				Message: fmt.Sprintf("Service %s/%s does not exist", p.Namespace, s.Name)}, discovery.Request{}, nil
		case err != nil:
			return discovery.Result{}, discovery.Request{}, err
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(port corev1.ServicePort) bool { return port.Port == s.Port }) {
			return discovery.Result{Reason: inferencev1alpha1.ReasonServiceNotFound,
				Message: fmt.Sprintf("Service %s/%s has no port %d", p.Namespace, s.Name, s.Port)}, discovery.Request{}, nil
		}
	}
	req := discovery.Request{
		BaseURL:       resolution.ProviderURL(p),
		HealthPath:    p.Spec.HealthPath,
		StaticModels:  p.Spec.ServedModels,
		EnabledModels: p.Spec.EnabledModels,
	}
	if ref := p.Spec.APIKeySecretRef; ref != nil {
		key, found, err := resolution.ReadKey(ctx, r.Client, p.Namespace, ref)
		if err != nil {
			return discovery.Result{}, req, err
		}
		if !found {
			return discovery.Result{Reason: inferencev1alpha1.ReasonSecretNotFound, Message: r.secretNotFound(p.Namespace, ref)}, req, nil
		}
		req.AuthHeader, req.AuthValue = resolution.AuthHeader(p, key)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return r.Prober.Probe(ctx, req), req, nil
}

// secretNotFound says how to provide a missing key.
func (r *ProviderReconciler) secretNotFound(ns string, ref *inferencev1alpha1.SecretKeyReference) string {
	create := fmt.Sprintf("kubectl create secret generic %s -n %s --from-literal=%s=<api key>", ref.Name, ns, ref.Key)
	if len(r.SecretLabels) == 0 {
		return fmt.Sprintf("Secret %s/%s with key %q does not exist: create it with %s", ns, ref.Name, ref.Key, create)
	}
	pairs := make([]string, 0, len(r.SecretLabels))
	for k, v := range r.SecretLabels {
		pairs = append(pairs, k+"="+v)
	}
	slices.Sort(pairs)
	return fmt.Sprintf("Secret %s/%s with key %q does not exist among the Secrets the manager reads, those labelled %s: "+
		"create it with %s, and label it with kubectl label secret %s -n %s %s",
		ns, ref.Name, ref.Key, strings.Join(pairs, ","), create, ref.Name, ns, strings.Join(pairs, " "))
}

// nextProbe is the probe interval with jitter when the upstream is fine, and a doubling
// backoff from two seconds up to the interval while it fails.
func (r *ProviderReconciler) nextProbe(p *inferencev1alpha1.Provider, key types.NamespacedName, ok bool) time.Duration {
	interval := defaultProbeInterval
	if p.Spec.ProbeInterval != nil && p.Spec.ProbeInterval.Duration > 0 {
		interval = p.Spec.ProbeInterval.Duration
	}
	if ok {
		r.failures.Delete(key)
		return jitter(interval)
	}
	n := 1
	if v, found := r.failures.Load(key); found {
		n = v.(int) + 1
	}
	r.failures.Store(key, n)
	d := firstRetry
	for i := 1; i < n && d < interval; i++ {
		d *= 2
	}
	return jitter(min(d, interval))
}

// SetupWithManager registers the controller: Providers, and the Secrets and Services they
// reference, found through the field indexes of IndexFields.
func (r *ProviderReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&inferencev1alpha1.Provider{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.providersUsing(indexProviderSecret))).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.providersUsing(indexProviderService))).
		Named("provider").
		Complete(r)
}

// providersUsing maps a Secret or a Service to the Providers of its namespace that name it.
func (r *ProviderReconciler) providersUsing(index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []ctrl.Request {
		var list inferencev1alpha1.ProviderList
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{index: o.GetName()}); err != nil {
			log.FromContext(ctx).Error(err, "list providers", "index", index, "object", o.GetName())
			return nil
		}
		reqs := make([]ctrl.Request, 0, len(list.Items))
		for _, p := range list.Items {
			reqs = append(reqs, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
		}
		return reqs
	}
}
