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
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

func prov(ns, name string, ready bool, models ...string) inferencev1alpha1.Provider {
	p := inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Status.Models = models
	status := metav1.ConditionFalse
	if ready {
		status = metav1.ConditionTrue
	}
	p.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: status, Reason: "Unreachable"}}
	return p
}

func ent(ns, served string, refs ...inferencev1alpha1.ProviderReference) *inferencev1alpha1.ModelEntity {
	return &inferencev1alpha1.ModelEntity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "e"},
		Spec: inferencev1alpha1.ModelEntitySpec{ServedModelName: served, Providers: refs}}
}

func names(bs []Backend) string {
	var out []string
	for _, b := range bs {
		s := b.Namespace + "/" + b.Name
		if !b.Ready {
			s += "(" + string(b.Reason) + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestResolve(t *testing.T) {
	providers := []inferencev1alpha1.Provider{
		prov("team", "a", true, "m"),
		prov("team", "b", true, "other"),
		prov("team", "down", false, "m"),
		prov("system", "shared", true, "m"),
		prov("elsewhere", "x", true, "m"),
		prov("granted", "g", true, "m"),
	}
	grants := []gatewayv1beta1.ReferenceGrant{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "granted", Name: "allow-team"},
		Spec: gatewayv1beta1.ReferenceGrantSpec{
			From: []gatewayv1beta1.ReferenceGrantFrom{{Group: "inference.infergate.dev", Kind: "ModelEntity", Namespace: "team"}},
			To:   []gatewayv1beta1.ReferenceGrantTo{{Group: "inference.infergate.dev", Kind: "Provider"}},
		},
	}}
	ix := NewIndex(providers, grants, "system", true)
	tests := []struct {
		name string
		e    *inferencev1alpha1.ModelEntity
		want string
	}{
		{"implicit: ready providers of the namespace and the system workspace", ent("team", "m"), "system/shared team/a"},
		{"implicit in the system workspace itself", ent("system", "m"), "system/shared"},
		{"implicit: nothing serves it", ent("team", "nothing"), ""},
		{"explicit, with reasons", ent("team", "m",
			inferencev1alpha1.ProviderReference{Name: "a"},
			inferencev1alpha1.ProviderReference{Name: "down"},
			inferencev1alpha1.ProviderReference{Name: "b"},
			inferencev1alpha1.ProviderReference{Name: "ghost"},
			inferencev1alpha1.ProviderReference{Name: "x", Namespace: "elsewhere"},
			inferencev1alpha1.ProviderReference{Name: "g", Namespace: "granted"},
			inferencev1alpha1.ProviderReference{Name: "shared", Namespace: "system"},
		), "team/a team/down(NoReadyProvider) team/b(NoReadyProvider) team/ghost(ProviderNotFound) elsewhere/x(RefNotPermitted) granted/g system/shared"},
		{"explicit served name override", ent("team", "nope", inferencev1alpha1.ProviderReference{Name: "b", ServedModelName: "other"}), "team/b"},
	}
	for _, tt := range tests {
		if got := names(ix.Resolve(tt.e)); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}

	noGrants := NewIndex(providers, nil, "system", false)
	bs := noGrants.Resolve(ent("team", "m", inferencev1alpha1.ProviderReference{Name: "g", Namespace: "granted"}))
	if bs[0].Ready || !strings.Contains(bs[0].Message, "no ReferenceGrant CRD") {
		t.Errorf("without the CRD: %+v", bs[0])
	}
}

func TestProviderURL(t *testing.T) {
	p := &inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p"}}
	p.Spec.Service = &inferencev1alpha1.ServiceReference{Name: "vllm", Port: 8000, Path: "/v1/"}
	if got := ProviderURL(p); got != "http://vllm.team.svc:8000/v1" {
		t.Errorf("service URL %q", got)
	}
	p.Spec.Service, p.Spec.URL = nil, "https://api.example.com/v1/"
	if got := ProviderURL(p); got != "https://api.example.com/v1" {
		t.Errorf("URL %q", got)
	}
}

// Readiness counts only from a probe of the provider's current spec: a Ready condition of an
// earlier generation, or a status that has not caught up, is not ready.
func TestProviderReadyNeedsAProbeOfTheCurrentGeneration(t *testing.T) {
	ready := func(generation, observed, conditionObserved int64, status metav1.ConditionStatus) *inferencev1alpha1.Provider {
		p := &inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p", Generation: generation}}
		p.Status.ObservedGeneration = observed
		p.Status.Models = []string{"m"}
		p.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: status, Reason: "Ready", ObservedGeneration: conditionObserved}}
		return p
	}
	tests := []struct {
		name string
		p    *inferencev1alpha1.Provider
		want bool
	}{
		{"Ready, probed at the current generation", ready(2, 2, 2, metav1.ConditionTrue), true},
		{"spec changed since the probe", ready(2, 1, 1, metav1.ConditionTrue), false},
		{"status caught up, the Ready condition did not", ready(2, 2, 1, metav1.ConditionTrue), false},
		{"the Ready condition is newer than the status", ready(2, 1, 2, metav1.ConditionTrue), false},
		{"not Ready at the current generation", ready(2, 2, 2, metav1.ConditionFalse), false},
		{"never probed", &inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Generation: 1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ProviderReady(tt.p); got != tt.want {
				t.Errorf("ProviderReady = %v, want %v", got, tt.want)
			}
			ix := NewIndex([]inferencev1alpha1.Provider{*tt.p}, nil, "system", true)
			if got := len(ix.Resolve(ent("team", "m"))) == 1; got != tt.want {
				t.Errorf("used implicitly: %v, want %v", got, tt.want)
			}
		})
	}

	// Listed explicitly, a provider whose spec changed says why it is not used.
	stale := ready(2, 1, 1, metav1.ConditionTrue)
	bs := NewIndex([]inferencev1alpha1.Provider{*stale}, nil, "system", true).Resolve(ent("team", "m", inferencev1alpha1.ProviderReference{Name: "p"}))
	if bs[0].Ready || bs[0].Reason != inferencev1alpha1.ReasonNoReadyProvider || !strings.Contains(bs[0].Message, "has not been probed since its spec changed (generation 2)") {
		t.Errorf("listed, spec changed: %+v", bs[0])
	}
}

func virtual(ns, name string, targets ...string) inferencev1alpha1.ModelEntity {
	e := inferencev1alpha1.ModelEntity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, t := range targets {
		e.Spec.Targets = append(e.Spec.Targets, inferencev1alpha1.ModelTarget{Name: t})
	}
	return e
}

func TestTargetCycles(t *testing.T) {
	entities := []inferencev1alpha1.ModelEntity{virtual("team", "ping", "pong"), virtual("team", "pong", "ping")}
	// A ring of 100 virtual models: longer than the walk goes.
	for i := range 100 {
		entities = append(entities, virtual("team", fmt.Sprintf("r%d", i), fmt.Sprintf("r%d", (i+1)%100)))
	}
	ix := NewIndex(nil, nil, "system", false)
	ix.AddEntities(entities)
	ping := ix.ResolveTargets(&entities[0])
	if len(ping) != 1 || ping[0].Reason != inferencev1alpha1.ReasonTargetCycle || ping[0].Message != "spec.targets forms a cycle: team/ping → team/pong → team/ping" {
		t.Errorf("ping: %+v", ping)
	}
	ring := ix.ResolveTargets(&entities[2])
	if len(ring) != 1 || ring[0].Usable || ring[0].Reason != inferencev1alpha1.ReasonNoReadyTarget || !strings.Contains(ring[0].Message, "is itself a virtual model") {
		t.Errorf("a ring past the walk's bound: %+v", ring)
	}
}

func TestTargetNamedTwice(t *testing.T) {
	e := virtual("team", "chat", "llama")
	e.Spec.Targets = append(e.Spec.Targets, inferencev1alpha1.ModelTarget{Name: "llama", Namespace: "team"})
	ix := NewIndex(nil, nil, "system", false)
	got := ix.ResolveTargets(&e)
	if len(got) != 2 || got[1].Usable || !strings.Contains(got[1].Message, "names team/llama more than once") {
		t.Errorf("targets %+v", got)
	}
}
