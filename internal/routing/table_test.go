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
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/quota"
)

func testSpec() Spec {
	return Spec{
		Providers: []ProviderSpec{
			{Workspace: "team", Name: "nim-a", BaseURL: "http://10.0.0.1:8000/", Ready: true, AuthHeader: "authorization", AuthValue: "Bearer k"},
			{Workspace: "team", Name: "nim-b", BaseURL: "https://api.example.com/v1", Ready: true},
			{Workspace: "team", Name: "down", BaseURL: "http://10.0.0.3:8000", Ready: false},
			{Workspace: "system", Name: "nvidia-build", BaseURL: "https://integrate.api.nvidia.com", Ready: true},
			{Workspace: "team", Name: "broken", BaseURL: "ftp://x"},
		},
		Entities: []EntitySpec{
			{Workspace: "team", Name: "llama", Created: time.Unix(1700000000, 0), Backends: []BackendSpec{
				{Workspace: "team", Name: "nim-a", ServedModel: "meta/llama", Weight: 3},
				{Workspace: "team", Name: "nim-b", ServedModel: "llama-hosted"},
				{Workspace: "team", Name: "down", ServedModel: "meta/llama"},
				{Workspace: "system", Name: "nvidia-build", ServedModel: "meta/llama"},
			}},
			{Workspace: "team", Name: "alpha", Created: time.Unix(1700000001, 0), Backends: []BackendSpec{
				{Workspace: "team", Name: "nim-b", ServedModel: "alpha"},
			}},
			{Workspace: "team", Name: "orphan", Backends: []BackendSpec{
				{Workspace: "team", Name: "down", ServedModel: "x"},
			}},
			{Workspace: "team", Name: "ghost", Backends: []BackendSpec{
				{Workspace: "team", Name: "missing", ServedModel: "x"},
			}},
		},
	}
}

func TestNewBuildsLookups(t *testing.T) {
	table, errs := New(testSpec(), nil)
	if len(errs) != 2 {
		t.Fatalf("want 2 errors (bad URL, unknown provider), got %v", errs)
	}
	e, ok := table.Entity("team", "llama")
	if !ok || e.ID != "team/llama" || string(e.IDJSON) != `"team/llama"` {
		t.Fatalf("entity = %+v, %v", e, ok)
	}
	if len(e.Backends) != 3 {
		t.Fatalf("llama has %d backends, want the 3 ready ones", len(e.Backends))
	}
	if e.Backends[0].Weight != 3 || e.Backends[1].Weight != 1 || string(e.Backends[1].ServedModelJSON) != `"llama-hosted"` {
		t.Errorf("backends %+v", e.Backends)
	}
	if o, ok := table.Entity("team", "orphan"); !ok || len(o.Backends) != 0 {
		t.Errorf("an entity without ready providers must exist with no backends: %+v %v", o, ok)
	}
	if _, ok := table.Entity("other", "llama"); ok {
		t.Error("entities are per workspace")
	}
	p, ok := table.Provider("team", "nim-a")
	if !ok || p.URL.String() != "http://10.0.0.1:8000" || p.AuthHeader != "Authorization" || p.BaseEndsInV1 {
		t.Errorf("provider nim-a = %+v", p)
	}
	if p, _ := table.Provider("team", "nim-b"); !p.BaseEndsInV1 {
		t.Error("nim-b's base URL ends in /v1")
	}
	if _, ok := table.Provider("team", "broken"); ok {
		t.Error("a provider with a bad URL must be left out")
	}
	var ready map[string]any
	if err := json.Unmarshal(p.ReadyJSON, &ready); err != nil || ready["ready"] != true || ready["provider"] != "team/nim-a" {
		t.Errorf("ready JSON %s", p.ReadyJSON)
	}

	// The model list holds the routable entities of the workspace, sorted, in OpenAI's shape.
	var list struct {
		Object string
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
		}
	}
	if err := json.Unmarshal(table.ModelsJSON("team"), &list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "team/alpha" || list.Data[1].ID != "team/llama" ||
		list.Data[1].Created != 1700000000 || list.Data[1].OwnedBy != "team" || list.Data[1].Object != "model" {
		t.Errorf("models list %s", table.ModelsJSON("team"))
	}
	if string(table.ModelsJSON("nobody")) != `{"object":"list","data":[]}` {
		t.Errorf("empty workspace list %s", table.ModelsJSON("nobody"))
	}

	// The same list, entity by entity, for callers who may see only some of them.
	routable := table.RoutableEntities("team")
	if len(routable) != 2 || routable[0].Name != "alpha" || routable[1].Name != "llama" {
		t.Fatalf("routable entities %v", routable)
	}
	if got := ModelList(routable); string(got) != string(table.ModelsJSON("team")) {
		t.Errorf("ModelList of every routable entity %s, want the workspace's list %s", got, table.ModelsJSON("team"))
	}
	if got, want := ModelList(routable[1:]), `{"object":"list","data":[`+string(routable[1].ModelJSON)+`]}`; string(got) != want {
		t.Errorf("ModelList of one entity %s, want %s", got, want)
	}
	if got := ModelList(nil); string(got) != `{"object":"list","data":[]}` {
		t.Errorf("ModelList of none %s", got)
	}
}

func TestHealthCarriesOverWhileTheURLStaysTheSame(t *testing.T) {
	first, _ := New(testSpec(), nil)
	p1, _ := first.Provider("team", "nim-a")
	p1.Health.Begin()

	second, _ := New(testSpec(), first)
	p2, _ := second.Provider("team", "nim-a")
	if p2.Health != p1.Health || p2.Health.InFlight() != 1 {
		t.Error("health was not carried over")
	}

	spec := testSpec()
	spec.Providers[0].BaseURL = "http://10.0.0.9:8000"
	third, _ := New(spec, second)
	if p3, _ := third.Provider("team", "nim-a"); p3.Health == p1.Health {
		t.Error("a provider whose URL changed must start with fresh health")
	}
}

// A provider ejected by the gateway that its probes then turn NotReady and Ready again is back
// in rotation at once; one that stays Ready keeps its cool-down.
func TestReadyAgainEndsAnEjection(t *testing.T) {
	now := time.Now()
	policy := Policy{}.WithDefaults()
	first, _ := New(testSpec(), nil)
	p1, _ := first.Provider("team", "nim-a")
	for range policy.EjectAfter + 3 {
		p1.Health.Failed(now, 0, policy)
	}
	if !p1.Health.Ejected(now) {
		t.Fatal("not ejected")
	}
	second, _ := New(testSpec(), first)
	if p2, _ := second.Provider("team", "nim-a"); !p2.Health.Ejected(now) {
		t.Error("a rebuild with the provider still Ready ended its ejection")
	}
	spec := testSpec()
	spec.Providers[0].Ready = false
	third, _ := New(spec, second)
	if p3, _ := third.Provider("team", "nim-a"); !p3.Health.Ejected(now) {
		t.Error("turning NotReady ended the ejection")
	}
	fourth, _ := New(testSpec(), third)
	if p4, _ := fourth.Provider("team", "nim-a"); p4.Health.Ejected(now) || p4.Health.ConsecutiveFailures() != 0 {
		t.Error("the provider is still ejected after its probe found it Ready again")
	}
}

// entityOf builds an entity of the default balancing over providers of the given weights.
func entityOf(t *testing.T, weights ...int) *Entity {
	t.Helper()
	return entityWith(t, CacheAware, weights...)
}

// pick is Pick for a request without a prefix.
func pick(e *Entity, now time.Time, tried uint64) (int, bool) {
	i, c := e.Pick(now, tried, nil)
	return i, c != NoBackend
}

func TestPickFollowsWeights(t *testing.T) {
	e := entityOf(t, 3, 1)
	counts := [2]int{}
	for i := 0; i < 40000; i++ {
		idx, ok := pick(e, time.Now(), 0)
		if !ok {
			t.Fatal("no pick")
		}
		counts[idx]++
	}
	// With nothing in flight, the weighted draws decide: about 3:1 on the first draw.
	share := float64(counts[0]) / 40000
	if share < 0.70 || share > 0.80 {
		t.Errorf("weight 3 of 4 got %.2f of the picks", share)
	}
}

func TestPickPrefersFewerInFlight(t *testing.T) {
	e := entityOf(t, 1, 1)
	for i := 0; i < 10; i++ {
		e.Backends[0].Provider.Health.Begin()
	}
	for i := 0; i < 100; i++ {
		if idx, _ := pick(e, time.Now(), 0); idx != 1 {
			t.Fatal("picked the busy backend over an idle one")
		}
	}
}

func TestPickSkipsTriedAndEjected(t *testing.T) {
	e := entityOf(t, 1, 1, 1)
	policy := Policy{}.WithDefaults()
	now := time.Now()
	for i := 0; i < policy.EjectAfter; i++ {
		e.Backends[0].Provider.Health.Failed(now, 0, policy)
	}
	for i := 0; i < 200; i++ {
		idx, ok := pick(e, now, 1<<2)
		if !ok || idx != 1 {
			t.Fatalf("pick = %d, %v; want 1 (0 ejected, 2 tried)", idx, ok)
		}
	}
	if _, ok := pick(e, now, 0b111); ok {
		t.Error("every backend tried must give no pick")
	}
}

func TestEjectionAndRecovery(t *testing.T) {
	h := &Health{}
	p := Policy{EjectAfter: 2, BaseEjection: time.Second, MaxEjection: 5 * time.Second}
	now := time.Unix(1000, 0)
	if d := h.Failed(now, 0, p); d != 0 || h.Ejected(now) {
		t.Fatalf("one failure ejected for %s", d)
	}
	if d := h.Failed(now, 0, p); d != time.Second || !h.Ejected(now) {
		t.Fatalf("second failure: ejected for %s", d)
	}
	if h.Ejected(now.Add(time.Second)) {
		t.Error("still ejected after the cool-down")
	}
	// A failure right after the cool-down doubles it; the cap holds.
	if d := h.Failed(now.Add(time.Second), 0, p); d != 2*time.Second {
		t.Errorf("third failure: %s, want 2s", d)
	}
	for i := 0; i < 10; i++ {
		h.Failed(now, 0, p)
	}
	if d := h.Failed(now, 0, p); d != 5*time.Second {
		t.Errorf("cool-down %s, want the 5s cap", d)
	}
	h.Succeeded()
	if h.Ejected(now) || h.ConsecutiveFailures() != 0 {
		t.Error("success must clear the ejection and the failures")
	}
	// Retry-After ejects at once, for as long as asked (capped).
	if d := h.Failed(now, 3*time.Second, p); d != 3*time.Second || !h.Ejected(now.Add(2*time.Second)) {
		t.Errorf("Retry-After 3s: ejected for %s", d)
	}
	if d := h.Failed(now, time.Hour, p); d != 5*time.Second {
		t.Errorf("Retry-After 1h: ejected for %s, want the cap", d)
	}
}

func TestAllEjectedPicksTheOneThatFailedLongestAgo(t *testing.T) {
	e := entityOf(t, 1, 1, 1)
	p := Policy{EjectAfter: 1, BaseEjection: time.Minute, MaxEjection: time.Minute}
	base := time.Now()
	e.Backends[1].Provider.Health.Failed(base, 0, p)
	e.Backends[0].Provider.Health.Failed(base.Add(time.Second), 0, p)
	e.Backends[2].Provider.Health.Failed(base.Add(2*time.Second), 0, p)
	idx, ok := pick(e, base.Add(3*time.Second), 0)
	if !ok || idx != 1 {
		t.Errorf("pick = %d, %v; want 1, the oldest failure", idx, ok)
	}
	if idx, ok := pick(e, base.Add(3*time.Second), 1<<1); !ok || idx != 0 {
		t.Errorf("with 1 tried: pick = %d, %v; want 0", idx, ok)
	}
}

// Swapping the table while many goroutines read it: run with -race.
func TestStoreSwapUnderConcurrentReads(t *testing.T) {
	store := NewStore()
	first, _ := New(testSpec(), nil)
	store.Swap(first)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				table := store.Load()
				if e, ok := table.Entity("team", "llama"); ok {
					if idx, ok := pick(e, time.Now(), 0); ok {
						h := e.Backends[idx].Provider.Health
						h.Begin()
						h.End()
					}
				}
				if !strings.Contains(string(table.ModelsJSON("team")), "team/llama") {
					t.Error("a table without llama was visible")
					return
				}
			}
		}()
	}
	prev := first
	for i := 0; i < 200; i++ {
		next, _ := New(testSpec(), prev)
		store.Swap(next)
		prev = next
	}
	close(stop)
	wg.Wait()
}

func BenchmarkPick(b *testing.B) {
	spec := testSpec()
	table, _ := New(spec, nil)
	e, _ := table.Entity("team", "llama")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		e.Pick(now, 0, nil)
	}
}

// A cluster of 2,000 entities in 50 workspaces, each served by the 10 providers of its
// workspace.
func BenchmarkNewTable(b *testing.B) {
	var spec Spec
	for w := 0; w < 50; w++ {
		ws := "ws" + string(rune('a'+w%26)) + string(rune('a'+w/26))
		var backends []BackendSpec
		for p := 0; p < 10; p++ {
			name := "p" + string(rune('a'+p))
			spec.Providers = append(spec.Providers, ProviderSpec{Workspace: ws, Name: name, BaseURL: "http://" + name + "." + ws + ".svc:8000", Ready: true,
				AuthHeader: "Authorization", AuthValue: "Bearer k"})
			backends = append(backends, BackendSpec{Workspace: ws, Name: name, ServedModel: "meta/llama", Weight: 1})
		}
		for e := 0; e < 40; e++ {
			spec.Entities = append(spec.Entities, EntitySpec{Workspace: ws, Name: "e" + string(rune('a'+e%26)) + string(rune('a'+e/26)), Created: time.Now(), Backends: backends})
		}
	}
	b.ReportAllocs()
	var prev *Table
	for b.Loop() {
		prev, _ = New(spec, prev)
	}
}

// Headers the gateway sets itself never come from a Provider, whatever its stored object says
// (the CRD refuses them; objects stored before that rule still reach the table), and a model
// field in any letter case is the gateway's own too.
func TestReservedHeadersAndModelFieldsAreDropped(t *testing.T) {
	reserved := []Header{{Name: "X-Infergate-Hop", Value: "forged"}, {Name: "x-request-id", Value: "fixed"},
		{Name: "Traceparent", Value: "00-x"}, {Name: "Accept-Encoding", Value: "gzip"}, {Name: "X-Team", Value: "a"}}
	table, errs := New(Spec{Providers: []ProviderSpec{
		{Workspace: "team", Name: "extras", BaseURL: "http://10.0.0.1", Ready: true, DefaultHeaders: reserved, RequiredHeaders: reserved,
			RequiredBody: []BodyField{{Name: "Model", Value: []byte(`"expensive"`)}, {Name: "max_tokens", Value: []byte("5")}}},
		{Workspace: "team", Name: "key-in-hop", BaseURL: "http://10.0.0.2", Ready: true, AuthHeader: "x-infergate-hop", AuthValue: "sk-1"},
	}}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	p, _ := table.Provider("team", "extras")
	for _, hs := range [][]Header{p.DefaultHeaders, p.RequiredHeaders} {
		if len(hs) != 1 || hs[0].Name != "X-Team" {
			t.Errorf("headers %+v, want only X-Team", hs)
		}
	}
	if len(p.RequiredBody) != 1 || p.RequiredBody[0].Name != "max_tokens" {
		t.Errorf("required body %+v, want only max_tokens", p.RequiredBody)
	}
	k, _ := table.Provider("team", "key-in-hop")
	if k.Ready || k.AuthHeader != "" || k.AuthValue != "" {
		t.Errorf("a provider whose key would replace the hop header: ready %v, header %q", k.Ready, k.AuthHeader)
	}
}

// A workspace's own budgets are bounded, most specific first; the system workspace's always
// apply besides.
func TestWorkspaceBudgetsAreBoundedAndGlobalOnesKept(t *testing.T) {
	var spec Spec
	spec.Budgets = append(spec.Budgets, &quota.Budget{Workspace: "system", Name: "platform", ID: "system/platform", Global: true})
	for i := 0; i < MaxWorkspaceBudgets+10; i++ {
		name := fmt.Sprintf("b%02d", i)
		spec.Budgets = append(spec.Budgets, &quota.Budget{Workspace: "team", Name: name, ID: "team/" + name, Specificity: 8})
	}
	table, _ := New(spec, nil)
	got := table.Budgets("team")
	if len(got) != MaxWorkspaceBudgets+1 {
		t.Fatalf("%d budgets apply, want %d of the workspace and the global one", len(got), MaxWorkspaceBudgets)
	}
	if last := got[len(got)-1]; last.ID != "system/platform" {
		t.Errorf("the least specific is %s, want the global one, and kept", last.ID)
	}
	if got[0].ID != "team/b00" {
		t.Errorf("first %s, want team/b00 (by name on a tie)", got[0].ID)
	}
	if other := table.Budgets("elsewhere"); len(other) != 1 || other[0].ID != "system/platform" {
		t.Errorf("another workspace gets %v", other)
	}
}
