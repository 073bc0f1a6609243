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
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

func provider(ns, name, url string, key *inferencev1alpha1.SecretKeyReference) *inferencev1alpha1.Provider {
	return &inferencev1alpha1.Provider{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       inferencev1alpha1.ProviderSpec{URL: url, APIKeySecretRef: key},
	}
}

func TestProviderDiscoversModelsWithItsKey(t *testing.T) {
	ns := namespace(t)
	up := upstream(t, "sk-team", "meta/llama-3.1-8b-instruct", "nv/embed", "other/model")
	create(t, secret(ns, "api-key", "key", "sk-team"))
	p := provider(ns, "nim", up.URL, &inferencev1alpha1.SecretKeyReference{Name: "api-key", Key: "key"})
	p.Spec.EnabledModels = []string{"meta/llama-3.1-8b-instruct", "nv/embed"}
	create(t, p)

	cond := readyReason(t, p, inferencev1alpha1.ReasonReady)
	if cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, "2 of 3 listed models enabled") {
		t.Errorf("condition %+v", cond)
	}
	if !slices.Equal(p.Status.Models, []string{"meta/llama-3.1-8b-instruct", "nv/embed"}) || p.Status.URL != up.URL ||
		p.Status.ObservedGeneration != p.Generation || p.Status.LastProbeTime == nil {
		t.Errorf("status %+v", p.Status)
	}
	eventually(t, 10*time.Second, func() error {
		if !slices.Contains(eventsFor(t, p), "Ready") {
			return fmt.Errorf("no Ready event: %v", eventsFor(t, p))
		}
		return nil
	})
}

// A key read from a file (kubectl create secret --from-file) ends with a newline: it is trimmed.
func TestProviderKeyIsTrimmed(t *testing.T) {
	ns := namespace(t)
	up := upstream(t, "sk-from-file", "m")
	create(t, secret(ns, "from-file", "key", "  sk-from-file\n"))
	p := provider(ns, "nim", up.URL, &inferencev1alpha1.SecretKeyReference{Name: "from-file", Key: "key"})
	create(t, p)
	readyReason(t, p, inferencev1alpha1.ReasonReady)
}

func TestProviderReasonsAPersonCanActOn(t *testing.T) {
	ns := namespace(t)
	up := upstream(t, "right", "m")
	create(t, secret(ns, "wrong", "key", "nope"))

	missing := provider(ns, "missing", up.URL, &inferencev1alpha1.SecretKeyReference{Name: "absent", Key: "key"})
	badKey := provider(ns, "bad-key", up.URL, &inferencev1alpha1.SecretKeyReference{Name: "wrong", Key: "key"})
	dead := provider(ns, "dead", "http://127.0.0.1:1", nil)
	create(t, missing, badKey, dead)

	if c := readyReason(t, missing, inferencev1alpha1.ReasonSecretNotFound); !strings.Contains(c.Message, "kubectl create secret generic absent") {
		t.Errorf("SecretNotFound message %q", c.Message)
	}
	readyReason(t, badKey, inferencev1alpha1.ReasonUnauthorized)
	readyReason(t, dead, inferencev1alpha1.ReasonUnreachable)
	eventually(t, 10*time.Second, func() error {
		if !slices.Contains(eventsFor(t, badKey), "Unauthorized") {
			return fmt.Errorf("no Unauthorized event: %v", eventsFor(t, badKey))
		}
		return nil
	})
	for _, p := range []*inferencev1alpha1.Provider{missing, badKey, dead} {
		if strings.Contains(fmt.Sprint(p.Status), "nope") {
			t.Errorf("status of %s shows the key: %+v", p.Name, p.Status)
		}
	}

	// The Secret appears and the key is rotated: both are picked up without touching the Providers.
	create(t, secret(ns, "absent", "key", "right"))
	readyReason(t, missing, inferencev1alpha1.ReasonReady)
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "wrong"}, &s); err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"key": []byte("right")}
	if err := k8s.Update(context.Background(), &s); err != nil {
		t.Fatal(err)
	}
	readyReason(t, badKey, inferencev1alpha1.ReasonReady)
}

func TestProviderOfAServiceAndOfANonOpenAIUpstream(t *testing.T) {
	ns := namespace(t)
	p := &inferencev1alpha1.Provider{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "in-cluster"},
		Spec:       inferencev1alpha1.ProviderSpec{Service: &inferencev1alpha1.ServiceReference{Name: "vllm", Port: 8000}},
	}
	create(t, p)
	readyReason(t, p, inferencev1alpha1.ReasonServiceNotFound)
	create(t, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vllm"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8000}}},
	})
	// The Service exists now; its DNS name does not resolve outside a cluster.
	readyReason(t, p, inferencev1alpha1.ReasonUnreachable)
	if p.Status.URL != "http://vllm."+ns+".svc:8000" {
		t.Errorf("URL %q", p.Status.URL)
	}

	web := upstream(t, "", "m")
	html := provider(ns, "html", web.URL+"/not-openai", nil)
	create(t, html)
	readyReason(t, html, inferencev1alpha1.ReasonNotOpenAICompatible)
}

func TestProviderSaysWhetherItsMetricsAreRead(t *testing.T) {
	ns := namespace(t)
	up := upstream(t, "sk", "meta/llama")
	create(t, secret(ns, "key", "key", "sk"))
	ref := &inferencev1alpha1.SecretKeyReference{Name: "key", Key: "key"}
	read := provider(ns, "read", up.URL, ref)
	read.Spec.Metrics = &inferencev1alpha1.ProviderMetrics{} // the defaults: /metrics every 200ms
	missing := provider(ns, "missing", up.URL, ref)
	missing.Spec.Metrics = &inferencev1alpha1.ProviderMetrics{Path: "/stats"}
	unknown := provider(ns, "unknown", up.URL, ref)
	unknown.Spec.Metrics = &inferencev1alpha1.ProviderMetrics{Path: "/v1/models"}
	none := provider(ns, "none", up.URL, ref)
	create(t, read, missing, unknown, none)

	for p, want := range map[*inferencev1alpha1.Provider]struct {
		reason  inferencev1alpha1.ConditionReason
		message string
	}{
		read:    {inferencev1alpha1.ReasonMetricsRead, "every gateway replica reads vLLM metrics (requests waiting and running, and KV cache usage) from " + up.URL + "/metrics every 200ms"},
		missing: {inferencev1alpha1.ReasonScrapeFailed, "GET " + up.URL + "/stats answered 404 Not Found: the gateway balances this provider on its own signals"},
		unknown: {inferencev1alpha1.ReasonUnknownMetrics, "GET " + up.URL + "/v1/models holds no queue metrics of a known engine"},
	} {
		c := metricsCondition(t, p, want.reason)
		if !strings.HasPrefix(c.Message, want.message) || (c.Status == metav1.ConditionTrue) != (want.reason == inferencev1alpha1.ReasonMetricsRead) {
			t.Errorf("%s: condition %+v, want a message starting %q", p.Name, c, want.message)
		}
		// A provider whose metrics cannot be read is still routable.
		readyReason(t, p, inferencev1alpha1.ReasonReady)
	}
	readyReason(t, none, inferencev1alpha1.ReasonReady)
	if c := meta.FindStatusCondition(none.Status.Conditions, inferencev1alpha1.ConditionMetricsAvailable); c != nil {
		t.Errorf("a provider without spec.metrics has %+v", c)
	}

	// Turning the reads off removes the condition.
	read.Spec.Metrics = nil
	if err := k8s.Update(context.Background(), read); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(read), read); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(read.Status.Conditions, inferencev1alpha1.ConditionMetricsAvailable); c != nil {
			return fmt.Errorf("condition still there: %+v", c)
		}
		return nil
	})
}

// metricsCondition waits for the MetricsAvailable condition of p to have reason.
func metricsCondition(t *testing.T, p *inferencev1alpha1.Provider, reason inferencev1alpha1.ConditionReason) metav1.Condition {
	t.Helper()
	var cond metav1.Condition
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, inferencev1alpha1.ConditionMetricsAvailable)
		if c == nil || c.Reason != string(reason) {
			return fmt.Errorf("%s MetricsAvailable condition %+v, want reason %s", p.Name, c, reason)
		}
		cond = *c
		return nil
	})
	return cond
}
