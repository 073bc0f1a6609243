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

package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/routing"
)

// DefaultOutputReservation is the output tokens reserved for a request that sets no cap of its
// own (max_tokens, max_completion_tokens or max_output_tokens). When less than this is left in
// a budget, the gateway sends the cap that fits.
const DefaultOutputReservation = 4096

// MaxTokensHeader tells the client that the gateway lowered (or set) the request's output cap
// to what its budgets had left, and to how many tokens.
const MaxTokensHeader = "X-Infergate-Budget-Max-Tokens"

// The output caps a request may set, by API: chat completions (the current name first),
// completions, responses.
var capFields = [...]string{"max_completion_tokens", "max_tokens", "max_output_tokens"}

// admit decides a request against the budgets that apply to it, before it goes upstream: it
// reserves its tokens (the prompt's estimate and the output it may produce), lowers its output
// cap where its budgets have less left, and asks for the usage of a stream so that it can be
// settled. It returns the error to answer, with the x-ratelimit headers set on w.
func (g *Gateway) admit(w http.ResponseWriter, pr *proxyRequest, table *routing.Table) *apiError {
	if g.limiter == nil {
		return nil
	}
	budgets := table.Budgets(pr.rt.workspace)
	if len(budgets) == 0 {
		return nil
	}
	name, groups := "", []string(nil)
	if u := userFrom(pr.in.Context()); u != nil {
		name, groups = u.GetName(), u.GetGroups()
	}
	entity := ""
	if pr.entity != nil {
		entity = pr.entity.Name
	}
	var providers []string // those the request may reach, listed once a budget names some
	q := &pr.quota
	for _, b := range budgets {
		if len(b.Providers) > 0 && providers == nil {
			providers = pr.reachable()
		}
		if !b.Applies(pr.rt.workspace, name, groups, entity, providers) && !pr.appliesThroughTarget(b, name, groups, providers) {
			continue
		}
		for i := range b.Limits {
			q.Counters = append(q.Counters, quota.Counter{Key: quota.CounterKey(b, &b.Limits[i], pr.rt.workspace, name), Budget: b, Limit: &b.Limits[i]})
		}
	}
	if len(q.Counters) == 0 {
		return nil
	}
	input, output, capped, choices, apiErr := pr.estimate()
	if apiErr != nil {
		return apiErr
	}
	q.Input, q.Output = input, output
	err := g.limiter.Reserve(pr.ctx, q, &pr.decision)
	m := g.metrics
	switch {
	case errors.Is(err, quota.ErrUnavailable):
		m.budgetDecisions.WithLabelValues(pr.rt.workspace, "unavailable", "").Inc()
		return errBudgetUnavailable()
	case err != nil:
		return errBudgetUnavailable() // the client went away meanwhile; nobody reads it
	}
	d := &pr.decision
	g.rateLimitHeaders(w.Header(), q, d)
	if !d.Allowed {
		m.budgetDecisions.WithLabelValues(pr.rt.workspace, "refused", d.Via).Inc()
		div := divisor(g.limiter, d)
		i := quota.Blocking(q, d, div)
		c := &q.Counters[i]
		m.budgetRefusals.WithLabelValues(pr.rt.workspace, c.Budget.ID, c.Limit.Name).Inc()
		return errBudgetRefused(c, d, i, div)
	}
	pr.budgeted = true
	decision := "allowed"
	if pr.object && generates(pr.apiPath()) && countsOutput(q) {
		// The upstream must produce no more than was reserved: every cap the request set
		// becomes the cap granted, shared by its choices; without one, the API's is set.
		perChoice := max(d.Output/choices, 1)
		fields := capFields[:0:0]
		for _, f := range capFields {
			if _, ok := jsonfield.Find(pr.body.b, pr.members, f); ok {
				fields = append(fields, f)
			}
		}
		if len(fields) == 0 {
			fields = append(fields, pr.capField())
		}
		for _, f := range fields {
			member := append(jsonfield.AppendString(nil, f), ':')
			pr.overrides = append(pr.overrides, routing.BodyField{Name: f, Member: strconv.AppendInt(member, perChoice, 10)})
		}
		if d.Output < q.Output || !capped {
			w.Header()[MaxTokensHeader] = []string{strconv.FormatInt(perChoice, 10)}
		}
		if d.Output < q.Output {
			decision = "clamped"
		}
	}
	m.budgetDecisions.WithLabelValues(pr.rt.workspace, decision, d.Via).Inc()
	pr.askUsage()
	return nil
}

// appliesThroughTarget tells whether budget b, which names model entities, applies to a
// virtual model's request through one of its targets: a budget on an entity holds however
// clients reach it. Targets count when they are of the request's workspace, or, for a global
// budget, whatever their workspace (a global budget names entities in every workspace).
func (pr *proxyRequest) appliesThroughTarget(b *quota.Budget, name string, groups []string, providers []string) bool {
	e := pr.entity
	if e == nil || !e.Virtual() || len(b.Entities) == 0 {
		return false
	}
	for t := range e.OtherTargets() {
		if (t.Workspace == pr.rt.workspace || b.Global) && b.Applies(pr.rt.workspace, name, groups, t.Name, providers) {
			return true
		}
	}
	return false
}

// reachable lists the providers ("namespace/name") a request may reach: for a virtual model,
// those of every target.
func (pr *proxyRequest) reachable() []string {
	if pr.provider != nil {
		return []string{pr.provider.ID}
	}
	e := pr.entity
	ids := make([]string, 0, e.ReadyProviders())
	for i := range e.Backends {
		ids = append(ids, e.Backends[i].Provider.ID)
	}
	for t := range e.OtherTargets() {
		for j := range t.Backends {
			ids = append(ids, t.Backends[j].Provider.ID)
		}
	}
	return ids
}

// maxChoices bounds the `n` a reservation multiplies by, and maxTokens the tokens one count
// may hold (a cap, a usage): servers bound both lower, and a hostile number must neither
// overflow a reservation nor take tokens back from a counter.
const (
	maxChoices = 128
	maxTokens  = 1 << 32
)

// tokens clamps a token count a client or a provider gave to [0, maxTokens].
func tokens(n int64) int64 { return min(max(n, 0), maxTokens) }

// countsOutput tells whether a counter of q counts output tokens.
func countsOutput(q *quota.Request) bool {
	for i := range q.Counters {
		if c := &q.Counters[i]; c.Limit.Tokens && c.Budget.Output {
			return true
		}
	}
	return false
}

// apiPath is the request's path after /-/, unescaped as the upstream will read it.
func (pr *proxyRequest) apiPath() string {
	if strings.IndexByte(pr.rt.trailing, '%') < 0 {
		return pr.rt.trailing
	}
	if p, err := url.PathUnescape(pr.rt.trailing); err == nil {
		return p
	}
	return pr.rt.trailing
}

// estimate returns a request's estimated input tokens (a token for every four bytes of its
// body: the prompt, tools and schemas all reach the model), the output it may produce (its
// largest cap, or DefaultOutputReservation on the generating paths, else none; times its
// choices), whether it set a cap, and its choices (`n`, or `best_of` when larger). Caps and
// choices that are not plain integers in range are refused: a server may read them otherwise.
func (pr *proxyRequest) estimate() (input, output int64, capped bool, choices int64, e *apiError) {
	choices = 1
	switch {
	case pr.body != nil:
		input = promptTokens(int64(len(pr.body.b)))
	case pr.in.ContentLength > 0:
		input = promptTokens(pr.in.ContentLength)
	}
	if !pr.object {
		if generates(pr.apiPath()) {
			output = DefaultOutputReservation
		}
		return input, output, false, 1, nil
	}
	b := pr.body.b
	for _, name := range [...]string{"n", "best_of"} {
		if m, ok := jsonfield.Find(b, pr.members, name); ok && string(m.Value(b)) != "null" {
			n, ok := jsonfield.IntValue(m.Value(b))
			if !ok || n < 1 || n > maxChoices {
				return 0, 0, false, 0, errInvalidBudgetField(name, "an integer from 1 to "+strconv.Itoa(maxChoices))
			}
			choices = max(choices, n)
		}
	}
	for _, name := range capFields {
		if m, ok := jsonfield.Find(b, pr.members, name); ok && string(m.Value(b)) != "null" {
			n, ok := jsonfield.IntValue(m.Value(b))
			if !ok || n < 0 {
				return 0, 0, false, 0, errInvalidBudgetField(name, "a non-negative integer")
			}
			output, capped = max(output, tokens(n)), true
		}
	}
	switch {
	case !capped && generates(pr.apiPath()):
		output = DefaultOutputReservation
	case capped && generates(pr.apiPath()):
		output = max(output, 1) // a server produces a token at least, whatever cap it is sent
	}
	return input, output * choices, capped, choices, nil
}

// generates tells whether a path produces output tokens: chat completions, completions and
// responses do, embeddings and the rest do not.
// promptTokens estimates the tokens of a prompt sent in n bytes of body: one per 4 bytes.
func promptTokens(n int64) int64 { return (n + 3) / 4 }

func generates(path string) bool {
	return strings.HasSuffix(path, "completions") || strings.HasSuffix(path, "responses")
}

// capField is the output cap of the request's API.
func (pr *proxyRequest) capField() string {
	switch path := pr.apiPath(); {
	case strings.HasSuffix(path, "chat/completions"):
		return "max_completion_tokens"
	case strings.HasSuffix(path, "responses"):
		return "max_output_tokens"
	}
	return "max_tokens"
}

// askUsage makes a chat or completion stream end with its usage, so that it can be settled:
// stream_options.include_usage is set, and when the client did not ask for it, the usage
// event is kept from it (stripUsage). The Responses API reports usage in its last event.
func (pr *proxyRequest) askUsage() {
	if !pr.object || !strings.HasSuffix(pr.apiPath(), "completions") {
		return
	}
	b := pr.body.b
	if m, ok := jsonfield.Find(b, pr.members, "stream"); !ok || string(m.Value(b)) != "true" {
		return
	}
	opts := []byte(nil)
	if m, ok := jsonfield.Find(b, pr.members, "stream_options"); ok {
		opts = m.Value(b)
	}
	var members []jsonfield.Member
	if len(opts) > 0 && opts[0] == '{' {
		members, _ = jsonfield.Members(nil, opts)
		if v, ok := jsonfield.Find(opts, members, "include_usage"); ok && string(v.Value(opts)) == "true" {
			return // asked for by the client
		}
	}
	field := []byte(`"stream_options":{"include_usage":true`)
	for _, m := range members {
		if !m.KeyIs(opts, "include_usage") {
			field = append(append(field, ','), opts[m.KeyStart:m.ValueEnd]...)
		}
	}
	field = append(field, '}')
	pr.overrides = append(pr.overrides, routing.BodyField{Name: "stream_options", Member: field})
	pr.stripUsage = true
}

// settle replaces what the request reserved with what it used: the usage the provider
// reported; for a stream cut before its usage, the estimated input and an output token for
// each event sent; for a success without usage, what was reserved; for a request that never
// ran or that the provider answered with an error, nothing; else the estimated input.
func (g *Gateway) settle(pr *proxyRequest) {
	q, d := &pr.quota, &pr.decision
	var input, output int64
	switch {
	case pr.usage.seen:
		// As the provider reported it, within bounds: a tenant's own provider must not give
		// back tokens its workspace spent elsewhere.
		input, output = tokens(pr.usage.prompt), tokens(pr.usage.completion)
	case pr.events > 0:
		input, output = q.Input, pr.events
	case pr.status >= 200 && pr.status < 300:
		input, output = q.Input, d.Output
	case pr.notRun, pr.ttfb > 0 && pr.status >= 400:
		// The request provably did not run, or the provider refused it: nothing is charged.
	default:
		// Sent, and then the client went away or the connection failed: the provider read the
		// prompt and may bill it.
		input = q.Input
	}
	g.limiter.Settle(pr.in.Context(), q, d, input, output)
	m := g.metrics
	for i := range q.Counters {
		c := &q.Counters[i]
		if i > 0 && q.Counters[i-1].Budget == c.Budget {
			continue // once per budget
		}
		caller := ""
		if c.Budget.PerCaller {
			if u := userFrom(pr.in.Context()); u != nil {
				caller = u.GetName()
			}
		}
		m.budgetUsed.WithLabelValues(pr.rt.workspace, c.Budget.ID, caller, "requests").Inc()
		var tokens int64
		if c.Budget.Input {
			tokens += input
		}
		if c.Budget.Output {
			tokens += output
		}
		m.budgetUsed.WithLabelValues(pr.rt.workspace, c.Budget.ID, caller, "tokens").Add(float64(tokens))
	}
}

// divisor is what the limits were divided by for d: the replicas, where each enforces its
// share.
func divisor(l *quota.Limiter, d *quota.Decision) int64 {
	if d.Via == quota.ViaFallback || (d.Via == quota.ViaInProcess && l.Replicas() > 1) {
		return int64(l.Replicas())
	}
	return 1
}

// rateLimitHeaders sets OpenAI's x-ratelimit headers from the request counter and the token
// counter with the least left (the most specific budget on a tie).
func (g *Gateway) rateLimitHeaders(h http.Header, q *quota.Request, d *quota.Decision) {
	div := divisor(g.limiter, d)
	for _, tokens := range [2]bool{false, true} {
		best, left := -1, int64(0)
		for i := range q.Counters {
			c := &q.Counters[i]
			if c.Limit.Tokens != tokens || i >= len(d.States) {
				continue
			}
			r := max(c.Limit.Max/div-d.States[i].Used, 0)
			if best < 0 || r < left {
				best, left = i, r
			}
		}
		if best < 0 {
			continue
		}
		unit := "requests"
		if tokens {
			unit = "tokens"
		}
		c := &q.Counters[best]
		h["X-Ratelimit-Limit-"+titled[unit]] = []string{strconv.FormatInt(c.Limit.Max/div, 10)}
		h["X-Ratelimit-Remaining-"+titled[unit]] = []string{strconv.FormatInt(left, 10)}
		h["X-Ratelimit-Reset-"+titled[unit]] = []string{resetText(d.States[best].End.Sub(d.Now))}
	}
}

var titled = map[string]string{"requests": "Requests", "tokens": "Tokens"}

// resetText writes a duration as OpenAI's reset headers do: "20ms", "1s", "6m0s".
func resetText(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// finishBudget settles a budgeted request; the caller's context may be gone.
func (g *Gateway) finishBudget(pr *proxyRequest) {
	if pr.budgeted {
		pr.budgeted = false
		g.settle(pr)
	}
}
