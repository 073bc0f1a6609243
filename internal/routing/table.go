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

// Package routing is the gateway's routing table: workspaces, model entities, the providers
// that serve them and everything the proxy needs to reach those providers (base URLs,
// credentials, extra headers and body fields, timeouts).
//
// A Table is built from plain Go values and never changes afterwards; the gateway reads the
// current one through an atomic pointer (see Store), so a request sees one consistent view and
// takes no lock. Only the live health of each provider (in-flight requests, failures,
// ejection) changes, through atomics, and it carries over from one table to the next.
//
// This package imports nothing from Kubernetes: the piece that turns cluster objects into a
// Spec lives elsewhere.
package routing

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/quota"
)

// MaxBackends bounds the providers considered for one entity.
const MaxBackends = 64

// Spec is everything a Table is built from.
type Spec struct {
	Providers []ProviderSpec
	Entities  []EntitySpec
	// Budgets are the InferenceBudgets; those marked Global apply to every workspace.
	Budgets []*quota.Budget
	// ShareWeights are the fair-share weights of workspaces that set one (default 1).
	ShareWeights map[string]float64
}

// ProviderSpec describes one upstream.
type ProviderSpec struct {
	Workspace, Name string
	// BaseURL is the upstream's base URL, http or https.
	BaseURL string
	// Ready tells whether the provider may receive traffic.
	Ready bool
	// AuthHeader and AuthValue are the credential header to inject (such as
	// "Authorization" and "Bearer sk-..."). Empty when the provider needs no key. A provider
	// whose key would go in a ReservedHeader is not ready.
	AuthHeader, AuthValue string
	// MissingCredentials tells that the provider needs a key that could not be read; requests
	// through its provider route are answered 424.
	MissingCredentials bool
	// DefaultHeaders are set when the request lacks them; RequiredHeaders always. Reserved
	// names (ReservedHeader) are dropped.
	DefaultHeaders, RequiredHeaders []Header
	// DefaultBody fields are added to JSON bodies that lack them; RequiredBody fields always.
	DefaultBody, RequiredBody []BodyField
	// Timeouts bound requests to this provider; zero fields take the gateway's defaults.
	Timeouts Timeouts
	// Metrics, when set, is where the model server's Prometheus metrics are scraped.
	Metrics *MetricsSpec
	// Queue bounds the wait of requests for this provider's capacity.
	Queue QueueSpec
}

// MetricsSpec says where and how often a provider's model server metrics are read.
type MetricsSpec struct {
	// URL of the metrics, such as http://vllm.team.svc:8000/metrics.
	URL string
	// Interval between scrapes. Default DefaultMetricsInterval.
	Interval time.Duration
}

// DefaultMetricsInterval is the scrape interval of providers that set none.
const DefaultMetricsInterval = 200 * time.Millisecond

// staleReports is how many scrape intervals a report counts for: a report older than that
// is ignored, and the picker falls back to this replica's own signals.
const staleReports = 3

// EntitySpec describes one model entity and the providers that may serve it.
type EntitySpec struct {
	Workspace, Name string
	// Created is reported as the model's creation time in /v1/models.
	Created time.Time
	// Backends name providers (which must be in Spec.Providers) and the model id to send each.
	Backends []BackendSpec
	// RetryOn are the failures, beyond those where the request provably did not run, after
	// which another provider is tried.
	RetryOn RetryOn
	// Balancing spreads requests over the backends. Default CacheAware.
	Balancing Balancing
	// Paths are the trailing paths (after "/-/") that the entity routes accept for it.
	// Default DefaultPaths.
	Paths []string
	// Priority is the class of the entity's requests when its providers are saturated.
	Priority flow.Class
	// Queue bounds their wait; unset fields take the providers'.
	Queue QueueSpec
	// Targets, when not nil, make the entity a virtual model: its requests go to these
	// entities (see targets.go). A target naming the entity itself stands for its Backends.
	Targets []TargetSpec
	// Affinity keeps related requests on one target.
	Affinity Affinity
}

// RetryOn is a set of failures after which a request that may have run upstream is retried.
type RetryOn uint8

const (
	// RetryGatewayError: a 502 or 504 answer.
	RetryGatewayError RetryOn = 1 << iota
	// RetryTimeout: no response headers within the response header timeout.
	RetryTimeout
	// RetryReset: the connection was lost after the request was sent.
	RetryReset
)

// BackendSpec names a provider of an entity.
type BackendSpec struct {
	Workspace, Name string
	// ServedModel is the model id sent to this provider.
	ServedModel string
	// Weight is the provider's relative share of requests; values below 1 count as 1.
	Weight int
}

// Header is one HTTP header.
type Header struct {
	Name, Value string
	// Values is []string{Value}, shared by every request so that setting the header
	// allocates nothing; New fills it in. Nobody may modify it.
	Values []string
}

// BodyField is one top-level JSON field; Value is raw JSON.
type BodyField struct {
	Name  string
	Value json.RawMessage
	// Member is `"name":value`, ready to splice into an object; New fills it in.
	Member []byte
}

// Timeouts bound the phases of an upstream request.
type Timeouts struct {
	// Connect bounds dialing and the TLS handshake.
	Connect time.Duration
	// ResponseHeader bounds the wait for response headers after the request is written.
	ResponseHeader time.Duration
	// StreamIdle bounds the silence between two reads of the response body.
	StreamIdle time.Duration
}

// WithDefaults fills the zero fields of t from d.
func (t Timeouts) WithDefaults(d Timeouts) Timeouts {
	if t.Connect <= 0 {
		t.Connect = d.Connect
	}
	if t.ResponseHeader <= 0 {
		t.ResponseHeader = d.ResponseHeader
	}
	if t.StreamIdle <= 0 {
		t.StreamIdle = d.StreamIdle
	}
	return t
}

// Key names an entity or a provider within a workspace.
type Key struct{ Workspace, Name string }

func (k Key) String() string { return k.Workspace + "/" + k.Name }

// Provider is an upstream as the proxy uses it.
type Provider struct {
	Key
	// ID is "workspace/name".
	ID string
	// URL is the parsed base URL, without a trailing slash.
	URL *url.URL
	// BaseEndsInV1 tells whether the base path ends in "/v1", so that a trailing path
	// starting with "v1/" drops that segment.
	BaseEndsInV1 bool
	Ready        bool
	AuthHeader   string
	AuthValue    string
	// AuthValues is []string{AuthValue}, shared by requests; nobody may modify it.
	AuthValues []string
	// MissingCredentials: the key could not be read.
	MissingCredentials bool
	// Header names are canonical (net/http's CanonicalHeaderKey).
	DefaultHeaders, RequiredHeaders []Header
	DefaultBody, RequiredBody       []BodyField
	Timeouts                        Timeouts
	// ReadyJSON is the body of GET .../provider/{name}/ready.
	ReadyJSON []byte
	// Metrics is where the model server's metrics are scraped; nil when they are not.
	Metrics *MetricsSpec
	// Health is the provider's live state, shared by every table that holds the provider.
	Health *Health
	// Prefixes is the index of the prompt blocks this replica sent the provider, shared by
	// every table that holds the provider.
	Prefixes *PrefixIndex
	// seed is the provider's identity in rendezvous hashing, the same on every replica.
	seed uint64
	// queue is the provider's bound of the wait for capacity.
	queue QueueSpec
}

// StaleAfter is the age past which a report of the provider's model server is ignored.
func (p *Provider) StaleAfter() time.Duration {
	if p.Metrics == nil {
		return 0
	}
	return staleReports * p.Metrics.Interval
}

// Entity is a model entity as the proxy uses it.
type Entity struct {
	Key
	// ID is the OpenAI model id "workspace/name"; IDJSON is it as a JSON string.
	ID     string
	IDJSON []byte
	// Backends are the Ready providers that serve the entity. Empty means 503.
	Backends []Backend
	// ModelJSON is the entity's object in /v1/models.
	ModelJSON []byte
	// RetryOn are the failures, beyond the safe ones, after which another provider is tried.
	RetryOn RetryOn
	// Balancing spreads requests over the backends.
	Balancing Balancing
	// Paths are the trailing paths the entity routes accept for it, with POST.
	Paths []string
	// Priority is the class of the entity's requests; Queue bounds their wait.
	Priority flow.Class
	Queue    Queue
	// Pool names the set of its providers: entities with the same providers share a queue.
	Pool string
	// Targets are the entities that serve a virtual model, by order; nil for other entities.
	Targets []Target
	// Affinity keeps related requests of a virtual model on one target.
	Affinity Affinity

	routable bool

	rr       atomic.Uint64 // RoundRobin's position in schedule
	schedule []uint8       // RoundRobin's order of backends
}

// Backend is a provider of an entity.
type Backend struct {
	Provider *Provider
	// ServedModel is the id sent upstream; ServedModelJSON is it as a JSON string.
	ServedModel     string
	ServedModelJSON []byte
	Weight          int
}

// Table is an immutable routing table.
type Table struct {
	workspaces map[string]struct{}
	entities   map[Key]*Entity
	providers  map[Key]*Provider
	models     map[string][]byte
	listed     map[string][]*Entity
	routable   int
	built      time.Time
	// budgets are the budgets of each workspace that has some, its own first, then the global
	// ones, most specific first; global those of every other workspace.
	budgets map[string][]*quota.Budget
	global  []*quota.Budget
	// shareWeights are the workspaces' fair-share weights.
	shareWeights map[string]float64
	// quote returns a served name as a JSON string, each once; set while New builds.
	quote func(string) []byte
}

// Budgets returns the budgets that may apply to requests of workspace ws, most specific first.
func (t *Table) Budgets(ws string) []*quota.Budget {
	if b, ok := t.budgets[ws]; ok {
		return b
	}
	return t.global
}

// HasBudgets tells whether the table holds any budget.
func (t *Table) HasBudgets() bool { return len(t.budgets) > 0 || len(t.global) > 0 }

func (t *Table) addBudgets(budgets []*quota.Budget) {
	t.budgets = map[string][]*quota.Budget{}
	for _, b := range budgets {
		if b.Global {
			t.global = append(t.global, b)
		}
	}
	bySpecificity := func(a, b *quota.Budget) int {
		return cmp.Or(cmp.Compare(b.Specificity, a.Specificity), cmp.Compare(a.ID, b.ID))
	}
	own := map[string][]*quota.Budget{}
	for _, b := range budgets {
		if !b.Global {
			own[b.Workspace] = append(own[b.Workspace], b)
		}
	}
	slices.SortStableFunc(t.global, bySpecificity)
	for ws, list := range own {
		// A workspace's budgets are bounded, so that a tenant's budgets cannot make every
		// decision a long script on the store all replicas share; the global ones always count.
		slices.SortStableFunc(list, bySpecificity)
		list = append(list[:min(len(list), MaxWorkspaceBudgets):min(len(list), MaxWorkspaceBudgets)], t.global...)
		slices.SortStableFunc(list, bySpecificity)
		t.budgets[ws] = list
	}
}

// MaxWorkspaceBudgets bounds the InferenceBudgets of one workspace that the gateway applies: the
// most specific ones, then by name; those of the system workspace apply besides.
const MaxWorkspaceBudgets = 16

// emptyModels is the model list of a workspace with no routable entity.
var emptyModels = []byte(`{"object":"list","data":[]}`)

// Entity returns the entity ws/name.
func (t *Table) Entity(ws, name string) (*Entity, bool) {
	e, ok := t.entities[Key{ws, name}]
	return e, ok
}

// Provider returns the provider ws/name.
func (t *Table) Provider(ws, name string) (*Provider, bool) {
	p, ok := t.providers[Key{ws, name}]
	return p, ok
}

// ModelsJSON returns the OpenAI model list of the routable entities of ws.
func (t *Table) ModelsJSON(ws string) []byte {
	if b, ok := t.models[ws]; ok {
		return b
	}
	return emptyModels
}

// RoutableEntities returns the routable entities of ws, sorted by name: those that ModelsJSON
// lists. The slice is shared; nobody may modify it.
func (t *Table) RoutableEntities(ws string) []*Entity { return t.listed[ws] }

// ModelList returns the OpenAI model list of entities, in their order.
func ModelList(entities []*Entity) []byte {
	n := len(emptyModels)
	for _, e := range entities {
		n += len(e.ModelJSON) + 1
	}
	buf := make([]byte, 0, n)
	buf = append(buf, `{"object":"list","data":[`...)
	for i, e := range entities {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e.ModelJSON...)
	}
	return append(buf, "]}"...)
}

// HasWorkspace reports whether any entity or provider lives in ws.
func (t *Table) HasWorkspace(ws string) bool {
	_, ok := t.workspaces[ws]
	return ok
}

// EachProvider calls fn for every provider.
func (t *Table) EachProvider(fn func(*Provider)) {
	for _, p := range t.providers {
		fn(p)
	}
}

// EachEntity calls fn for every entity, routable or not.
func (t *Table) EachEntity(fn func(*Entity)) {
	for _, e := range t.entities {
		fn(e)
	}
}

// Routable returns the number of routable entities: with a ready provider, or a target that has one.
func (t *Table) Routable() int { return t.routable }

// Len returns the number of entities and providers.
func (t *Table) Len() (entities, providers int) { return len(t.entities), len(t.providers) }

// Built returns when the table was built.
func (t *Table) Built() time.Time { return t.built }

// Empty returns a table that routes nothing.
func Empty() *Table {
	return &Table{workspaces: map[string]struct{}{}, entities: map[Key]*Entity{}, providers: map[Key]*Provider{}, models: map[string][]byte{}, listed: map[string][]*Entity{}, built: time.Now()}
}

// New builds a table. Providers of prev with the same key and URL keep their live health.
// Providers or backends that cannot be used (a bad URL, an unknown provider) are left out and
// reported in the returned errors; the table is usable either way.
func New(spec Spec, prev *Table) (*Table, []error) {
	var errs []error
	t := &Table{
		workspaces: map[string]struct{}{},
		entities:   make(map[Key]*Entity, len(spec.Entities)),
		providers:  make(map[Key]*Provider, len(spec.Providers)),
		models:     map[string][]byte{},
		listed:     map[string][]*Entity{},
		built:      time.Now(),
	}
	t.addBudgets(spec.Budgets)
	t.shareWeights = spec.ShareWeights
	for i := range spec.Providers {
		p, err := newProvider(&spec.Providers[i], prev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.providers[p.Key] = p
		t.workspaces[p.Workspace] = struct{}{}
	}

	// Served names repeat across entities: quote each once.
	quoted := map[string][]byte{}
	t.quote = func(s string) []byte {
		q, ok := quoted[s]
		if !ok {
			q = jsonfield.AppendString(nil, s)
			quoted[s] = q
		}
		return q
	}
	for i := range spec.Entities {
		es := &spec.Entities[i]
		e, eerrs := t.newEntity(es, prev)
		errs = append(errs, eerrs...)
		t.entities[e.Key] = e
		t.workspaces[e.Workspace] = struct{}{}
	}
	errs = append(errs, t.linkTargets(spec.Entities)...)
	for i := range spec.Entities {
		e := t.entities[Key{spec.Entities[i].Workspace, spec.Entities[i].Name}]
		if e.routable {
			t.routable++
			t.listed[e.Workspace] = append(t.listed[e.Workspace], e)
		}
	}
	for ws, list := range t.listed {
		slices.SortFunc(list, func(a, b *Entity) int { return strings.Compare(a.Name, b.Name) })
		t.models[ws] = ModelList(list)
	}
	return t, errs
}

// newEntity builds the entity of es on the providers of t; prev, when set, hands on its
// RoundRobin position.
func (t *Table) newEntity(es *EntitySpec, prev *Table) (*Entity, []error) {
	var errs []error
	key := Key{es.Workspace, es.Name}
	e := &Entity{Key: key, ID: key.String(), RetryOn: es.RetryOn, Balancing: es.Balancing, Paths: es.Paths, Priority: es.Priority, Affinity: es.Affinity}
	if len(e.Paths) == 0 {
		e.Paths = DefaultPaths
	}
	e.IDJSON = jsonfield.AppendString(nil, e.ID)
	e.Backends = make([]Backend, 0, min(len(es.Backends), MaxBackends))
	for _, b := range es.Backends {
		p, ok := t.providers[Key{b.Workspace, b.Name}]
		if !ok {
			errs = append(errs, fmt.Errorf("entity %s: provider %s/%s is not in the table", e.ID, b.Workspace, b.Name))
			continue
		}
		if !p.Ready || b.ServedModel == "" {
			continue
		}
		if len(e.Backends) == MaxBackends {
			errs = append(errs, fmt.Errorf("entity %s: more than %d ready providers, the rest are ignored", e.ID, MaxBackends))
			break
		}
		e.Backends = append(e.Backends, Backend{
			Provider:        p,
			ServedModel:     b.ServedModel,
			ServedModelJSON: t.quote(b.ServedModel),
			Weight:          max(b.Weight, 1),
		})
	}
	e.Queue, e.Pool = queueOf(es.Queue, e.Backends), poolOf(e.Backends)
	if e.Balancing == RoundRobin && len(e.Backends) > 1 {
		weights := make([]int, len(e.Backends))
		for i, b := range e.Backends {
			weights[i] = b.Weight
		}
		e.schedule = smoothSchedule(weights)
		if prev != nil {
			if old, ok := prev.entities[key]; ok {
				// Go on from where the last table was, not from the first provider again.
				e.rr.Store(old.rr.Load())
			}
		}
	}
	e.ModelJSON, _ = json.Marshal(openAIModel{ID: e.ID, Object: "model", Created: es.Created.Unix(), OwnedBy: es.Workspace})
	return e, errs
}

type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func newProvider(ps *ProviderSpec, prev *Table) (*Provider, error) {
	key := Key{ps.Workspace, ps.Name}
	u, err := url.Parse(ps.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("provider %s: base URL %q is not an absolute http(s) URL without credentials", key, ps.BaseURL)
	}
	defaultBody, err := bodyFields(ps.DefaultBody)
	if err != nil {
		return nil, fmt.Errorf("provider %s: default body: %w", key, err)
	}
	requiredBody, err := bodyFields(ps.RequiredBody)
	if err != nil {
		return nil, fmt.Errorf("provider %s: required body: %w", key, err)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	u.RawQuery, u.Fragment = "", ""
	p := &Provider{
		Key:                key,
		ID:                 key.String(),
		URL:                u,
		BaseEndsInV1:       strings.HasSuffix(u.Path, "/v1"),
		Ready:              ps.Ready,
		AuthHeader:         http.CanonicalHeaderKey(ps.AuthHeader),
		AuthValue:          ps.AuthValue,
		MissingCredentials: ps.MissingCredentials,
		DefaultHeaders:     canonical(ps.DefaultHeaders),
		RequiredHeaders:    canonical(ps.RequiredHeaders),
		DefaultBody:        defaultBody,
		RequiredBody:       requiredBody,
		Timeouts:           ps.Timeouts,
		queue:              ps.Queue,
		seed:               xxhash.Sum64String(key.String()),
	}
	if m := ps.Metrics; m != nil {
		if mu, err := url.Parse(m.URL); err != nil || (mu.Scheme != "http" && mu.Scheme != "https") || mu.Host == "" || mu.User != nil {
			return nil, fmt.Errorf("provider %s: metrics URL %q is not an absolute http(s) URL without credentials", key, m.URL)
		}
		p.Metrics = &MetricsSpec{URL: m.URL, Interval: m.Interval}
		if p.Metrics.Interval <= 0 {
			p.Metrics.Interval = DefaultMetricsInterval
		}
	}
	switch {
	case p.AuthValue == "":
		p.AuthHeader = ""
	case ReservedHeader(p.AuthHeader):
		// The key would replace a header of the gateway's own: never sent, never routed to.
		p.AuthHeader, p.AuthValue, p.Ready = "", "", false
	default:
		p.AuthValues = []string{p.AuthValue}
	}
	p.ReadyJSON, _ = json.Marshal(struct {
		Ready    bool   `json:"ready"`
		Provider string `json:"provider"`
		HostURL  string `json:"host_url"`
	}{true, p.ID, u.String()})
	if prev != nil {
		if old, ok := prev.providers[key]; ok && old.URL.String() == u.String() {
			p.Health, p.Prefixes = old.Health, old.Prefixes
			if p.Ready && !old.Ready {
				// Its probe succeeded again: that ends an ejection by the gateway's own
				// failures too (Envoy's successful_active_health_check_uneject_host), or a
				// provider back from the dead would wait out a cool-down of up to two minutes.
				p.Health.Succeeded()
			}
		}
	}
	if p.Health == nil {
		p.Health = &Health{}
	}
	if p.Prefixes == nil {
		p.Prefixes = NewPrefixIndex(DefaultPrefixIndexBlocks)
	}
	return p, nil
}

func bodyFields(fs []BodyField) ([]BodyField, error) {
	if len(fs) == 0 {
		return nil, nil
	}
	out := make([]BodyField, 0, len(fs))
	for _, f := range fs {
		if strings.EqualFold(f.Name, "model") {
			continue // the gateway's own, in any case: an upstream might read either
		}
		if !json.Valid(f.Value) {
			return nil, fmt.Errorf("field %q is not valid JSON", f.Name)
		}
		member := append(append(jsonfield.AppendString(nil, f.Name), ':'), f.Value...)
		out = append(out, BodyField{Name: f.Name, Value: f.Value, Member: member})
	}
	return out, nil
}

func canonical(hs []Header) []Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]Header, 0, len(hs))
	for _, h := range hs {
		if ReservedHeader(h.Name) {
			continue
		}
		out = append(out, Header{Name: http.CanonicalHeaderKey(h.Name), Value: h.Value, Values: []string{h.Value}})
	}
	return out
}

// Store holds the current table. Loads never block; Swap replaces the table for the requests
// that start afterwards while requests in flight finish with the table they loaded.
type Store struct {
	p      atomic.Pointer[Table]
	loaded atomic.Bool
}

// NewStore returns a store holding an empty table.
func NewStore() *Store {
	s := &Store{}
	s.p.Store(Empty())
	return s
}

// Load returns the current table.
func (s *Store) Load() *Table { return s.p.Load() }

// Swap installs t and returns the previous table.
func (s *Store) Swap(t *Table) *Table {
	prev := s.p.Swap(t)
	s.loaded.Store(true)
	return prev
}

// Loaded reports whether a table has been installed with Swap.
func (s *Store) Loaded() bool { return s.loaded.Load() }
