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

package routing

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func virtualSpec() Spec {
	p := func(name string, ready bool) ProviderSpec {
		return ProviderSpec{Workspace: "team", Name: name, BaseURL: "http://" + name + ":8000", Ready: ready}
	}
	e := func(name, provider string) EntitySpec {
		return EntitySpec{Workspace: "team", Name: name, Backends: []BackendSpec{{Workspace: "team", Name: provider, ServedModel: "m-" + name}}}
	}
	return Spec{
		Providers: []ProviderSpec{p("pa", true), p("pb", true), p("pc", false)},
		Entities: []EntitySpec{
			e("a", "pa"), e("b", "pb"), e("down", "pc"),
			{Workspace: "team", Name: "chat", Targets: []TargetSpec{
				{Workspace: "team", Name: "b", Weight: 1, Order: 1},
				{Workspace: "team", Name: "down", Weight: 5},
				{Workspace: "team", Name: "a", Weight: 3},
				{Workspace: "team", Name: "chat", Weight: 1, Order: 2}, // itself: its own providers, none here
			}},
			{Workspace: "team", Name: "outer", Targets: []TargetSpec{{Workspace: "team", Name: "chat", Weight: 1}, {Workspace: "team", Name: "ghost", Weight: 1}}},
			{Workspace: "team", Name: "nowhere", Targets: []TargetSpec{{Workspace: "team", Name: "down", Weight: 1}}},
		},
	}
}

func TestVirtualModelsInTheTable(t *testing.T) {
	table, errs := New(virtualSpec(), nil)
	if len(errs) != 2 || !strings.Contains(errs[0].Error()+errs[1].Error(), "team/chat is a virtual model itself") ||
		!strings.Contains(errs[0].Error()+errs[1].Error(), "target team/ghost is not in the table") {
		t.Errorf("errors %v, want the virtual target and the missing one", errs)
	}
	chat, _ := table.Entity("team", "chat")
	if !chat.Virtual() || !chat.Routable() || chat.ReadyProviders() != 2 || len(chat.Backends) != 0 {
		t.Errorf("chat: virtual %v routable %v ready providers %d", chat.Virtual(), chat.Routable(), chat.ReadyProviders())
	}
	var orders []int
	for _, tg := range chat.Targets {
		orders = append(orders, tg.Order)
	}
	if len(orders) != 4 || orders[0] != 0 || orders[1] != 0 || orders[2] != 1 || orders[3] != 2 {
		t.Errorf("targets by order: %v", orders)
	}
	if outer, _ := table.Entity("team", "outer"); outer.Routable() || len(outer.Targets) != 0 {
		t.Errorf("a virtual model of a virtual model routes: %+v", outer.Targets)
	}
	if nowhere, _ := table.Entity("team", "nowhere"); nowhere.Routable() || strings.Contains(string(table.ModelsJSON("team")), "nowhere") {
		t.Error("a virtual model whose targets have no ready provider is routable or listed")
	}
	if !strings.Contains(string(table.ModelsJSON("team")), `"id":"team/chat"`) {
		t.Errorf("the virtual model is not listed: %s", table.ModelsJSON("team"))
	}

	// Plans leave out targets without a ready provider or the path, and keep orders.
	for range 1000 {
		plan := chat.PlanTargets(nil, rand.Uint64(), "v1/chat/completions")
		var names []string
		for _, i := range plan {
			names = append(names, chat.Targets[i].Entity.Name)
		}
		if len(names) != 2 || names[1] != "b" {
			t.Fatalf("plan %v, want a then b", names)
		}
	}
	if plan := chat.PlanTargets(nil, 1, "v1/files"); len(plan) != 0 {
		t.Errorf("a path no target serves has a plan: %v", plan)
	}
	// Stable by key: the same key, the same plan.
	if a, b := chat.PlanTargets(nil, 42, "v1/chat/completions"), chat.PlanTargets(nil, 42, "v1/chat/completions"); string(a) != string(b) {
		t.Errorf("one key, two plans: %v %v", a, b)
	}
}

func TestPlanTargetsDrawsByWeight(t *testing.T) {
	spec := virtualSpec()
	spec.Entities[3].Targets[0].Order = 0 // b joins a in order 0: 3 to 1
	table, _ := New(spec, nil)
	chat, _ := table.Entity("team", "chat")
	n, a := 20000, 0
	for range n {
		if chat.Targets[chat.PlanTargets(nil, rand.Uint64(), "v1/chat/completions")[0]].Entity.Name == "a" {
			a++
		}
	}
	// Binomial(20000, 0.75): standard deviation 61; 5 of them either way.
	if got := float64(a); got < 15000-5*61 || got > 15000+5*61 {
		t.Errorf("a of weight 3 against 1 drawn first %d times in %d, want 15000 ± 305", a, n)
	}
}
