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
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

func entity(ns, name, served string, refs ...inferencev1alpha1.ProviderReference) *inferencev1alpha1.ModelEntity {
	return &inferencev1alpha1.ModelEntity{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       inferencev1alpha1.ModelEntitySpec{ServedModelName: served, Providers: refs},
	}
}

func TestEntityResolvesProvidersOfItsNamespaceAndTheSystemWorkspace(t *testing.T) {
	ns := namespace(t)
	up := upstream(t, "", "meta/llama", "other")
	e := entity(ns, "llama", "meta/llama")
	create(t, e)
	c := readyReason(t, e, inferencev1alpha1.ReasonNoReadyProvider)
	if c.Status != metav1.ConditionFalse || e.Status.ID != ns+"/llama" || e.Status.ReadyProviders != 0 {
		t.Errorf("without providers: %+v %+v", c, e.Status)
	}

	local := provider(ns, "local", up.URL, nil)
	shared := provider(systemWorkspace, "shared-"+ns, up.URL, nil)
	create(t, local, shared)
	eventually(t, 20e9, func() error {
		if err := k8s.Get(ctx(), key(e), e); err != nil {
			return err
		}
		if e.Status.ReadyProviders != 2 {
			return errorf("ready providers %d, want 2: %+v", e.Status.ReadyProviders, e.Status.Providers)
		}
		return nil
	})
	readyReason(t, e, inferencev1alpha1.ReasonReady)
	got := []string{}
	for _, p := range e.Status.Providers {
		got = append(got, p.Namespace+"/"+p.Name+"="+p.ServedModelName)
	}
	if strings.Join(got, ",") != "system/shared-"+ns+"=meta/llama,"+ns+"/local=meta/llama" {
		t.Errorf("resolved %v", got)
	}

	// A provider of another workspace is not used implicitly.
	other := namespace(t)
	elsewhere := entity(other, "llama", "not-served-anywhere")
	create(t, elsewhere)
	readyReason(t, elsewhere, inferencev1alpha1.ReasonNoReadyProvider)
}

func TestEntityExplicitProvidersAndReferenceGrants(t *testing.T) {
	ns, team := namespace(t), namespace(t)
	up := upstream(t, "", "meta/llama", "llama-hosted")
	create(t, provider(team, "theirs", up.URL, nil), provider(ns, "mine", up.URL, nil))
	w := int32(3)
	e := entity(ns, "llama", "meta/llama",
		inferencev1alpha1.ProviderReference{Name: "mine", Weight: &w},
		inferencev1alpha1.ProviderReference{Name: "theirs", Namespace: team, ServedModelName: "llama-hosted"},
		inferencev1alpha1.ProviderReference{Name: "ghost"},
	)
	create(t, e)
	c := readyReason(t, e, inferencev1alpha1.ReasonReady)
	if e.Status.ReadyProviders != 1 || !strings.Contains(c.Message, "1 of 3 providers ready") {
		t.Errorf("condition %+v status %+v", c, e.Status)
	}
	byName := map[string]inferencev1alpha1.ResolvedProvider{}
	for _, p := range e.Status.Providers {
		byName[p.Name] = p
	}
	if !byName["mine"].Ready || byName["mine"].Weight != 3 || byName["theirs"].Ready || byName["ghost"].Ready || byName["theirs"].ServedModelName != "llama-hosted" {
		t.Errorf("providers %+v", e.Status.Providers)
	}

	// Only the cross-namespace one: refused until a ReferenceGrant lets it in.
	only := entity(ns, "hosted", "meta/llama", inferencev1alpha1.ProviderReference{Name: "theirs", Namespace: team, ServedModelName: "llama-hosted"})
	create(t, only)
	if c := readyReason(t, only, inferencev1alpha1.ReasonRefNotPermitted); !strings.Contains(c.Message, "create a ReferenceGrant in "+team) {
		t.Errorf("message %q", c.Message)
	}
	create(t, &gatewayv1beta1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "let-" + ns},
		Spec: gatewayv1beta1.ReferenceGrantSpec{
			From: []gatewayv1beta1.ReferenceGrantFrom{{Group: "inference.infergate.dev", Kind: "ModelEntity", Namespace: gatewayv1beta1.Namespace(ns)}},
			To:   []gatewayv1beta1.ReferenceGrantTo{{Group: "inference.infergate.dev", Kind: "Provider"}},
		},
	})
	readyReason(t, only, inferencev1alpha1.ReasonReady)

	ghostOnly := entity(ns, "ghost", "meta/llama", inferencev1alpha1.ProviderReference{Name: "ghost"})
	create(t, ghostOnly)
	readyReason(t, ghostOnly, inferencev1alpha1.ReasonProviderNotFound)
	create(t, provider(ns, "ghost", up.URL, nil))
	readyReason(t, ghostOnly, inferencev1alpha1.ReasonReady)
}

func target(name, ns string, weight, order int32) inferencev1alpha1.ModelTarget {
	return inferencev1alpha1.ModelTarget{Name: name, Namespace: ns, Weight: &weight, Order: order}
}

func virtualEntity(ns, name string, targets ...inferencev1alpha1.ModelTarget) *inferencev1alpha1.ModelEntity {
	return &inferencev1alpha1.ModelEntity{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       inferencev1alpha1.ModelEntitySpec{Targets: targets},
	}
}

func TestVirtualModelResolvesItsTargets(t *testing.T) {
	ns, team := namespace(t), namespace(t)
	up := upstream(t, "", "meta/llama")
	create(t, provider(ns, "local", up.URL, nil), entity(ns, "llama", "meta/llama"), entity(ns, "later", "meta/later"))
	readyReason(t, entity(ns, "llama", "meta/llama"), inferencev1alpha1.ReasonReady)

	chat := virtualEntity(ns, "chat", target("llama", "", 3, 0), target("later", "", 1, 0), target("ghost", systemWorkspace, 1, 1))
	create(t, chat)
	c := readyReason(t, chat, inferencev1alpha1.ReasonReady)
	if !strings.Contains(c.Message, "1 of 3 targets ready") || len(chat.Status.Targets) != 3 || !chat.Status.Targets[0].Ready || chat.Status.Targets[1].Ready {
		t.Errorf("condition %+v, targets %+v", c, chat.Status.Targets)
	}
	if want := "llama 75%, later 25% (not ready); then " + systemWorkspace + "/ghost (not ready)"; chat.Status.TargetSummary != want {
		t.Errorf("targetSummary %q, want %q", chat.Status.TargetSummary, want)
	}
	if !strings.Contains(chat.Status.Targets[2].Message, "does not exist") {
		t.Errorf("ghost: %+v", chat.Status.Targets[2])
	}

	// A target's provider appearing makes the target ready, without touching the virtual model.
	create(t, provider(ns, "late", upstream(t, "", "meta/later").URL, nil))
	eventually(t, 20e9, func() error {
		if err := k8s.Get(ctx(), key(chat), chat); err != nil {
			return err
		}
		if !strings.HasPrefix(chat.Status.TargetSummary, "llama 75%, later 25%; then") {
			return errorf("targetSummary %q", chat.Status.TargetSummary)
		}
		return nil
	})

	// A served name a target sends is held to what the target's providers serve.
	other := target("llama", "", 1, 0)
	other.ServedModelName = "meta/not-enabled"
	pinned := virtualEntity(ns, "pinned", other)
	create(t, pinned)
	if c := readyReason(t, pinned, inferencev1alpha1.ReasonNoReadyTarget); !strings.Contains(c.Message, `no ready provider of target `+ns+`/llama serves "meta/not-enabled"`) {
		t.Errorf("message %q", c.Message)
	}

	// Virtual models that target each other: the resolver refuses the cycle and shows it.
	create(t, virtualEntity(ns, "ping", target("pong", "", 1, 0)), virtualEntity(ns, "pong", target("ping", "", 1, 0)))
	if c := readyReason(t, virtualEntity(ns, "ping"), inferencev1alpha1.ReasonTargetCycle); !strings.Contains(c.Message, ns+"/ping → "+ns+"/pong → "+ns+"/ping") {
		t.Errorf("cycle message %q", c.Message)
	}
	// A virtual model as a target is refused too, cycle or not.
	create(t, virtualEntity(ns, "outer", target("chat", "", 1, 0)))
	if c := readyReason(t, virtualEntity(ns, "outer"), inferencev1alpha1.ReasonNoReadyTarget); !strings.Contains(c.Message, "is itself a virtual model") {
		t.Errorf("message %q", c.Message)
	}

	// A target in another namespace needs a ReferenceGrant there.
	create(t, provider(team, "theirs", up.URL, nil), entity(team, "llama", "meta/llama"))
	theirs := virtualEntity(ns, "theirs", target("llama", team, 1, 0))
	create(t, theirs)
	if c := readyReason(t, theirs, inferencev1alpha1.ReasonRefNotPermitted); !strings.Contains(c.Message, "allows ModelEntity from "+ns+" to ModelEntity") {
		t.Errorf("message %q", c.Message)
	}
	create(t, &gatewayv1beta1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "let-" + ns},
		Spec: gatewayv1beta1.ReferenceGrantSpec{
			From: []gatewayv1beta1.ReferenceGrantFrom{{Group: "inference.infergate.dev", Kind: "ModelEntity", Namespace: gatewayv1beta1.Namespace(ns)}},
			To:   []gatewayv1beta1.ReferenceGrantTo{{Group: "inference.infergate.dev", Kind: "ModelEntity"}},
		},
	})
	readyReason(t, theirs, inferencev1alpha1.ReasonReady)

	// A target whose providers are in a namespace that granted them is ready through them.
	create(t, &gatewayv1beta1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "providers-for-" + ns},
		Spec: gatewayv1beta1.ReferenceGrantSpec{
			From: []gatewayv1beta1.ReferenceGrantFrom{{Group: "inference.infergate.dev", Kind: "ModelEntity", Namespace: gatewayv1beta1.Namespace(ns)}},
			To:   []gatewayv1beta1.ReferenceGrantTo{{Group: "inference.infergate.dev", Kind: "Provider"}},
		},
	})
	create(t, entity(ns, "borrowed", "meta/llama", inferencev1alpha1.ProviderReference{Name: "theirs", Namespace: team}))
	readyReason(t, entity(ns, "borrowed", "meta/llama"), inferencev1alpha1.ReasonReady)
	viaGrant := virtualEntity(ns, "via-grant", target("borrowed", "", 1, 0))
	create(t, viaGrant)
	readyReason(t, viaGrant, inferencev1alpha1.ReasonReady)
}
