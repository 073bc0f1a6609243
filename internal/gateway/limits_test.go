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

package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/redistest"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

// testBudget is a budget of workspace team-a counting input and output tokens.
func testBudget(name string, limits ...quota.Limit) *quota.Budget {
	return &quota.Budget{Workspace: "team-a", Name: name, ID: "team-a/" + name, Input: true, Output: true, Zone: time.UTC, Limits: limits, Specificity: 8}
}

func rpm(n int64) quota.Limit {
	return quota.Limit{Name: "requestsPerMinute", Window: quota.Minute, Max: n}
}

func tpm(n int64) quota.Limit {
	return quota.Limit{Name: "tokensPerMinute", Window: quota.Minute, Max: n, Tokens: true}
}

func tpd(n int64) quota.Limit {
	return quota.Limit{Name: "tokensPerDay", Window: quota.Day, Max: n, Tokens: true}
}

// budgetedGateway serves model team-a/chat from a simulator, under budgets, with a limiter of
// its own (in process) or on store.
func budgetedGateway(t *testing.T, up *upstream, store quota.Store, replicas int, budgets ...*quota.Budget) *gw {
	t.Helper()
	l, err := quota.NewLimiter(quota.LimiterOptions{Store: store, Replicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	spec := routing.Spec{
		Providers: []routing.ProviderSpec{provider("team-a", "sim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team-a", "chat", backend("team-a", "sim", "sim/model"))},
		Budgets:   budgets,
	}
	return newGateway(t, spec, gateway.Options{Limiter: l})
}

// rawChat posts a chat completion and returns the response and its body.
func rawChat(t *testing.T, g *gw, body string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodPost, g.base("team-a")+"/openai/-/v1/chat/completions", body, map[string]string{"Content-Type": "application/json"})
}

func TestBudgetRefusesPastItsRequestLimitWithOpenAIHeaders(t *testing.T) {
	up := newUpstream(t, simulator.Options{})
	g := budgetedGateway(t, up, nil, 1, testBudget("two-a-minute", rpm(2), tpm(100_000)))
	client := g.client("team-a")
	for i := 0; i < 2; i++ {
		var resp *http.Response
		if _, err := client.Chat.Completions.New(context.Background(), chatParams("chat"), option.WithResponseInto(&resp)); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		h := resp.Header
		if h.Get("X-Ratelimit-Limit-Requests") != "2" || h.Get("X-Ratelimit-Remaining-Requests") != strconv.Itoa(1-i) {
			t.Errorf("request %d: requests headers %q/%q", i+1, h.Get("X-Ratelimit-Limit-Requests"), h.Get("X-Ratelimit-Remaining-Requests"))
		}
		if h.Get("X-Ratelimit-Limit-Tokens") != "100000" || h.Get("X-Ratelimit-Remaining-Tokens") == "" || h.Get("X-Ratelimit-Reset-Tokens") == "" || h.Get("X-Ratelimit-Reset-Requests") == "" {
			t.Errorf("request %d: token headers missing: %v", i+1, h)
		}
	}
	_, err := client.Chat.Completions.New(context.Background(), chatParams("chat"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third request: %v, want 429", err)
	}
	h := apiErr.Response.Header
	if ra, _ := strconv.Atoi(h.Get("Retry-After")); ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want 1..60 seconds", h.Get("Retry-After"))
	}
	if h.Get("X-Ratelimit-Remaining-Requests") != "0" || h.Get("X-Ratelimit-Limit-Requests") != "2" {
		t.Errorf("429 headers: %v", h)
	}
	if apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "requests" || !strings.Contains(apiErr.Message, "team-a/two-a-minute") {
		t.Errorf("429 body: code %q type %q message %q", apiErr.Code, apiErr.Type, apiErr.Message)
	}
	var named struct{ Budget, Limit string }
	if err := json.Unmarshal([]byte(apiErr.RawJSON()), &named); err != nil || named.Budget != "team-a/two-a-minute" || named.Limit != "requestsPerMinute" {
		t.Errorf("the error names budget %q and limit %q (%v): %s", named.Budget, named.Limit, err, apiErr.RawJSON())
	}
	if n := len(up.sim.Requests()); n != 2 {
		t.Errorf("the upstream received %d requests, want 2: a refused request must not reach it", n)
	}
	if got := counter(t, g.reg, "infergate_budget_refusals_total", map[string]string{"budget": "team-a/two-a-minute", "limit": "requestsPerMinute"}); got != 1 {
		t.Errorf("refusals metric %v, want 1", got)
	}
	if got := counter(t, g.reg, "infergate_budget_decisions_total", map[string]string{"decision": "allowed", "via": "in_process"}); got != 2 {
		t.Errorf("allowed decisions %v, want 2", got)
	}
}

func TestSpentDayBudgetIsNotARateLimit(t *testing.T) {
	up := newUpstream(t, simulator.Options{})
	g := budgetedGateway(t, up, nil, 1, testBudget("daily", tpd(5)))
	resp, data := rawChat(t, g, `{"model":"chat","messages":[{"role":"user","content":"a prompt longer than five tokens, surely"}]}`)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	e := decodeError(t, data)
	if e.Error.Code != "budget_exhausted" || e.Error.Type != "insufficient_quota" || !strings.Contains(e.Detail, "per day") {
		t.Errorf("error %+v", e)
	}
}

func TestOutputCapIsLoweredToWhatTheBudgetHasLeft(t *testing.T) {
	up := newUpstream(t, simulator.Options{})
	g := budgetedGateway(t, up, nil, 1, testBudget("small", tpm(200)))
	// The prompt's JSON text is 48 bytes: 12 tokens estimated, leaving 188 of output.
	resp, data := rawChat(t, g, `{"model":"chat","max_tokens":1000,"messages":[{"role":"user","content":"Say hello, please, to all"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var sent struct {
		MaxTokens int `json:"max_tokens"`
	}
	if err := json.Unmarshal(up.lastRequest(t).Body, &sent); err != nil {
		t.Fatal(err)
	}
	clamped, _ := strconv.Atoi(resp.Header.Get(gateway.MaxTokensHeader))
	if sent.MaxTokens <= 0 || sent.MaxTokens >= 200 || sent.MaxTokens != clamped {
		t.Errorf("upstream got max_tokens %d, header says %q: want the room left, below 200", sent.MaxTokens, resp.Header.Get(gateway.MaxTokensHeader))
	}
	// A request without a cap of its own gets one where less than the default reservation is left.
	resp, _ = rawChat(t, g, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	var sent2 map[string]any
	_ = json.Unmarshal(up.lastRequest(t).Body, &sent2)
	if resp.StatusCode != http.StatusOK || sent2["max_completion_tokens"] == nil || resp.Header.Get(gateway.MaxTokensHeader) == "" {
		t.Errorf("uncapped request: status %d, sent %v, header %q", resp.StatusCode, sent2, resp.Header.Get(gateway.MaxTokensHeader))
	}
}

func TestStreamsAreSettledFromTheirUsageWhichTheClientDidNotAskFor(t *testing.T) {
	up := newUpstream(t, simulator.Options{Chunks: 5})
	g := budgetedGateway(t, up, nil, 1, testBudget("streams", tpm(100_000)))
	client := g.client("team-a")
	stream := client.Chat.Completions.NewStreaming(context.Background(), chatParams("chat"))
	chunks := 0
	for stream.Next() {
		c := stream.Current()
		if len(c.Choices) == 0 || c.Usage.TotalTokens > 0 {
			t.Errorf("the client got a usage chunk it did not ask for: %s", c.RawJSON())
		}
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	var sent struct {
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(up.lastRequest(t).Body, &sent); err != nil || !sent.StreamOptions.IncludeUsage {
		t.Fatalf("upstream was not asked for the usage: %s", up.lastRequest(t).Body)
	}
	// Settled from the usage: prompt and 5 completion tokens, not the 4096 reserved.
	settled(t, g, "team-a/streams", 6, 100, 2*time.Second)

	// A client that asks for the usage gets it.
	stream = client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "chat", Messages: chatParams("chat").Messages,
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var usage int64
	for stream.Next() {
		usage += stream.Current().Usage.CompletionTokens
	}
	if err := stream.Err(); err != nil || usage != 5 {
		t.Errorf("asked-for usage: %d completion tokens, err %v", usage, err)
	}
}

func TestAStreamCutMidwayIsSettledFromWhatWasSent(t *testing.T) {
	up := newUpstream(t, simulator.Options{Chunks: 50, ChunkDelay: 20 * time.Millisecond})
	g := budgetedGateway(t, up, nil, 1, testBudget("cut", quota.Limit{Name: "tokensPerMinute", Window: quota.Minute, Max: 100_000, Tokens: true}))
	g.client("team-a")
	ctx, cancel := context.WithCancel(context.Background())
	stream := g.client("team-a").Chat.Completions.NewStreaming(ctx, chatParams("chat"))
	for i := 0; i < 5 && stream.Next(); i++ {
	}
	cancel()
	stream.Close()
	// The prompt's estimate and about the 5 events read (a few more may have been sent); not
	// the 4096 reserved, and not nothing.
	settled(t, g, "team-a/cut", 5, 40, 5*time.Second)
}

// Two gateway replicas share one Redis: clients racing on both never get more than the limit
// between them, and use all of it.
func TestReplicasShareOneLimitThroughRedis(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	up := newUpstream(t, simulator.Options{Chunks: 3})
	b := testBudget("shared", rpm(30))
	replicas := []*gw{budgetedGateway(t, up, &quota.Redis{Client: rc}, 2, b), budgetedGateway(t, up, &quota.Redis{Client: rc}, 2, b)}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	// Within one minute window: start right after a minute begins if the clock is near its end.
	if s := time.Now().Second(); s > 50 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	for c := 0; c < 20; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := replicas[c%2].client("team-a")
			for i := 0; i < 3; i++ {
				_, err := client.Chat.Completions.New(context.Background(), chatParams("chat"))
				var apiErr *openai.Error
				switch {
				case err == nil:
					ok.Add(1)
				case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests:
					refused.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 30 || refused.Load() != 30 {
		t.Errorf("admitted %d and refused %d of 60, want 30 and 30", ok.Load(), refused.Load())
	}
}

// Redis killed under load: a budget failing closed answers 503 budget_unavailable; one failing
// open admits this replica's share; neither is ever unlimited, and both recover.
func TestStoreOutageFollowsTheFailureMode(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer rc.Close()
	up := newUpstream(t, simulator.Options{Chunks: 2})
	closed := testBudget("closed", rpm(1000))
	closed.Entities = []string{"chat"}
	open := testBudget("open", rpm(20))
	open.FailOpen = true
	open.Entities = []string{"other"}
	storeMetrics := prometheus.NewRegistry()
	l, err := quota.NewLimiter(quota.LimiterOptions{Store: &quota.Redis{Client: rc}, Replicas: 4, Registerer: storeMetrics})
	if err != nil {
		t.Fatal(err)
	}
	spec := routing.Spec{
		Providers: []routing.ProviderSpec{provider("team-a", "sim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team-a", "chat", backend("team-a", "sim", "sim/model")), entity("team-a", "other", backend("team-a", "sim", "sim/model"))},
		Budgets:   []*quota.Budget{closed, open},
	}
	g := newGateway(t, spec, gateway.Options{Limiter: l})
	if resp, data := rawChat(t, g, `{"model":"chat","messages":[]}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("store up: %d %s", resp.StatusCode, data)
	}
	srv.Stop()
	resp, data := rawChat(t, g, `{"model":"chat","messages":[]}`)
	if resp.StatusCode != http.StatusServiceUnavailable || decodeError(t, data).Error.Code != "budget_unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("closed, store down: %d %s", resp.StatusCode, data)
	}
	admitted := 0
	for i := 0; i < 10; i++ {
		resp, data := rawChat(t, g, `{"model":"other","messages":[]}`)
		switch resp.StatusCode {
		case http.StatusOK:
			admitted++
		case http.StatusTooManyRequests:
			if !strings.Contains(decodeError(t, data).Detail, "divided by 4 replicas") {
				t.Errorf("fallback refusal does not say it is a replica's share: %s", data)
			}
		default:
			t.Fatalf("open, store down: %d %s", resp.StatusCode, data)
		}
	}
	if admitted != 5 {
		t.Errorf("open budget admitted %d with the store down, want 5 (20 / 4 replicas)", admitted)
	}
	if got := counter(t, g.reg, "infergate_budget_decisions_total", map[string]string{"via": "fallback", "decision": "allowed"}); got != 5 {
		t.Errorf("fallback decisions %v, want 5", got)
	}
	if got := counter(t, storeMetrics, "infergate_budget_store_errors_total", map[string]string{"operation": "reserve"}); got < 1 {
		t.Errorf("store errors %v", got)
	}
	srv.Restart()
	eventually(t, 5*time.Second, func() error {
		if resp, _ := rawChat(t, g, `{"model":"chat","messages":[]}`); resp.StatusCode != http.StatusOK {
			return errors.New("still " + resp.Status)
		}
		return nil
	})
}

// callers authenticates "Bearer <name>" as user <name>, and allows everything: it stands for
// the cluster's answers, which this test is not about.
type callers struct{}

func (callers) Authenticate(r *http.Request) (user.Info, bool, error) {
	name, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return &user.DefaultInfo{Name: name, Groups: []string{"team"}}, ok && name != "", nil
}

func (callers) Authorize(context.Context, authorizer.Attributes) (bool, string, error) {
	return true, "", nil
}

func (callers) AuthorizeListed(context.Context, authorizer.Attributes) (bool, string, error) {
	return true, "", nil
}

func TestPerCallerBudgetsAndSubjects(t *testing.T) {
	up := newUpstream(t, simulator.Options{Chunks: 2})
	l, err := quota.NewLimiter(quota.LimiterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	each := testBudget("each", rpm(1))
	each.PerCaller = true
	bob := testBudget("bob", rpm(0))
	bob.Users = []string{"bob"}
	spec := routing.Spec{
		Providers: []routing.ProviderSpec{provider("team-a", "sim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team-a", "chat", backend("team-a", "sim", "sim/model"))},
		Budgets:   []*quota.Budget{each, bob},
	}
	g := newGateway(t, spec, gateway.Options{Limiter: l, Access: callers{}})
	status := func(caller string) int {
		resp, _ := do(t, http.MethodPost, g.base("team-a")+"/openai/-/v1/chat/completions", `{"model":"chat","messages":[]}`,
			map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + caller})
		return resp.StatusCode
	}
	if s := status("alice"); s != http.StatusOK {
		t.Errorf("alice's first: %d", s)
	}
	if s := status("carol"); s != http.StatusOK {
		t.Errorf("carol's first: %d (alice's counter is not hers)", s)
	}
	if s := status("alice"); s != http.StatusTooManyRequests {
		t.Errorf("alice's second: %d", s)
	}
	if s := status("bob"); s != http.StatusTooManyRequests {
		t.Errorf("bob, named by a budget of 0: %d", s)
	}
	if got := counter(t, g.reg, "infergate_budget_used_total", map[string]string{"budget": "team-a/each", "caller": "carol", "unit": "requests"}); got != 1 {
		t.Errorf("carol's usage metric %v", got)
	}
}

// The provider route is no way around a token budget: its body is read to lower the cap, and
// its usage is read to settle, streams included.
func TestProviderRouteIsHeldToTokenBudgets(t *testing.T) {
	up := newUpstream(t, simulator.Options{Chunks: 4})
	g := budgetedGateway(t, up, nil, 1, testBudget("all", tpm(300)))
	url := g.base("team-a") + "/provider/sim/-/v1/chat/completions"
	resp, data := do(t, http.MethodPost, url, `{"model":"sim/model","max_tokens":5000,"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var sent struct {
		MaxTokens int `json:"max_tokens"`
	}
	if err := json.Unmarshal(up.lastRequest(t).Body, &sent); err != nil || sent.MaxTokens <= 0 || sent.MaxTokens >= 300 {
		t.Errorf("the provider got max_tokens %d (%v), want what the budget has left", sent.MaxTokens, err)
	}
	if !strings.Contains(string(data), `"model":"sim/model"`) {
		t.Errorf("the provider route changed the response: %s", data)
	}
	resp, data = do(t, http.MethodPost, url, `{"model":"sim/model","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusOK || strings.Contains(string(data), `"usage":{`) {
		t.Errorf("stream: status %d, the client got a usage it did not ask for: %s", resp.StatusCode, data)
	}
	// Settled from the usage: a few prompt tokens and 4 completion tokens each.
	settled(t, g, "team-a/all", 8, 40, 2*time.Second)
}

// n choices produce n times the output: the reservation and the cap account for it.
func TestChoicesShareTheCap(t *testing.T) {
	up := newUpstream(t, simulator.Options{})
	g := budgetedGateway(t, up, nil, 1, testBudget("n", tpm(1000)))
	resp, data := rawChat(t, g, `{"model":"chat","n":4,"max_tokens":500,"messages":[]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var sent struct {
		MaxTokens int `json:"max_tokens"`
	}
	if err := json.Unmarshal(up.lastRequest(t).Body, &sent); err != nil || sent.MaxTokens*4 > 1000 || sent.MaxTokens < 200 {
		t.Errorf("max_tokens sent %d for 4 choices and 1000 tokens left, want about 250 (%v)", sent.MaxTokens, err)
	}
}

// A provider that reports negative usage cannot give its workspace tokens back, and a client
// cap past int64's reach cannot turn a reservation negative.
func TestHostileNumbersDoNotLowerCounters(t *testing.T) {
	liar := newHTTPTestServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"x","object":"chat.completion","model":"sim/model","choices":[],"usage":{"prompt_tokens":-1000000,"completion_tokens":-1000000}}`))
	}))
	t.Cleanup(liar.Close)
	g := budgetedGateway(t, &upstream{srv: liar}, nil, 1, testBudget("honest", tpm(100)))
	for i := 0; i < 3; i++ {
		rawChat(t, g, `{"model":"chat","max_tokens":40,"messages":[]}`)
	}
	resp, data := rawChat(t, g, `{"model":"chat","max_tokens":40,"n":100000,"messages":[]}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(data), "'n' must be an integer from 1 to 128") {
		t.Fatalf("n of 100000: status %d: %s", resp.StatusCode, data)
	}
	resp, data = rawChat(t, g, `{"model":"chat","max_tokens":4294967296000,"n":128,"messages":[]}`)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	if rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens")); rem > 100 || rem < 0 {
		t.Errorf("remaining tokens %d of 100: the counter went below zero", rem)
	}
	if got := counter(t, g.reg, "infergate_budget_used_total", map[string]string{"budget": "team-a/honest", "unit": "tokens"}); got < 0 {
		t.Errorf("tokens counted %v", got)
	}
}

// Redis killed and back while clients keep calling: a closed budget's requests get 200 or
// 503 budget_unavailable, an open one's 200 or 429, nothing else, and both recover.
func TestStoreKilledUnderLoad(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer rc.Close()
	up := newUpstream(t, simulator.Options{Chunks: 2})
	closed := testBudget("closed", rpm(1_000_000))
	closed.Entities = []string{"chat"}
	open := testBudget("open", rpm(1_000_000))
	open.FailOpen = true
	open.Entities = []string{"other"}
	l, err := quota.NewLimiter(quota.LimiterOptions{Store: &quota.Redis{Client: rc}, Replicas: 2, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	spec := routing.Spec{
		Providers: []routing.ProviderSpec{provider("team-a", "sim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team-a", "chat", backend("team-a", "sim", "sim/model")), entity("team-a", "other", backend("team-a", "sim", "sim/model"))},
		Budgets:   []*quota.Budget{closed, open},
	}
	g := newGateway(t, spec, gateway.Options{Limiter: l})
	type tally struct {
		sync.Mutex
		codes map[string]int
	}
	seen := map[string]*tally{"chat": {codes: map[string]int{}}, "other": {codes: map[string]int{}}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		model := []string{"chat", "other"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := g.client("team-a")
			for ctx.Err() == nil {
				_, err := client.Chat.Completions.New(context.Background(), chatParams(model))
				code := "200"
				var apiErr *openai.Error
				switch {
				case errors.As(err, &apiErr):
					code = strconv.Itoa(apiErr.StatusCode) + " " + apiErr.Code
				case err != nil:
					code = err.Error()
				}
				seen[model].Lock()
				seen[model].codes[code]++
				seen[model].Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	srv.Stop()
	time.Sleep(time.Second)
	srv.Restart()
	time.Sleep(1500 * time.Millisecond) // past the back-off: the store is used again
	stop()
	wg.Wait()
	for model, want := range map[string]string{"chat": "503 budget_unavailable", "other": "200"} {
		codes := seen[model].codes
		for code, n := range codes {
			if code != "200" && code != want {
				t.Errorf("%s: %d answers %q; want only 200 and %q", model, n, code, want)
			}
		}
		if codes["200"] == 0 || (model == "chat" && codes[want] == 0) {
			t.Errorf("%s: answers %v", model, codes)
		}
		t.Logf("%s: %v", model, codes)
	}
	// Back: the store decides again.
	var resp *http.Response
	if _, err := g.client("team-a").Chat.Completions.New(context.Background(), chatParams("chat"), option.WithResponseInto(&resp)); err != nil {
		t.Fatalf("after the store came back: %v", err)
	}
}

// What the upstream is told to produce is what was reserved, however the request puts it: an
// escaped path, two caps, caps that are not integers, a provider route without a JSON type.
func TestTheCapSentIsTheCapReserved(t *testing.T) {
	up := newUpstream(t, simulator.Options{})
	g := budgetedGateway(t, up, nil, 1, testBudget("exact", tpm(100_000)))
	post := func(path, body string, header map[string]string) (*http.Response, map[string]any) {
		t.Helper()
		if header == nil {
			header = map[string]string{"Content-Type": "application/json"}
		}
		resp, data := do(t, http.MethodPost, g.base("team-a")+path, body, header)
		if resp.StatusCode != http.StatusOK {
			return resp, nil
		}
		var sent map[string]any
		if err := json.Unmarshal(up.lastRequest(t).Body, &sent); err != nil {
			t.Fatalf("%s: %v: %s", path, err, data)
		}
		return resp, sent
	}
	// Two caps: both become the one granted.
	_, sent := post("/openai/-/v1/chat/completions", `{"model":"chat","max_completion_tokens":0,"max_tokens":100000,"messages":[]}`, nil)
	if mt, _ := sent["max_tokens"].(float64); sent["max_completion_tokens"] != sent["max_tokens"] || mt < 99_000 || mt > 100_000 {
		t.Errorf("two caps sent as %v and %v, want both what is left of 100000", sent["max_completion_tokens"], sent["max_tokens"])
	}
	// An escaped path is the path it stands for: a cap is set.
	_, sent = post("/provider/sim/-/v1/chat/completion%73", `{"model":"sim/model","messages":[]}`, nil)
	if sent == nil || sent["max_completion_tokens"] != float64(gateway.DefaultOutputReservation) {
		t.Errorf("escaped path: sent %v, want max_completion_tokens %d", sent, gateway.DefaultOutputReservation)
	}
	// Caps and choices a server could read otherwise are refused.
	for _, body := range []string{`{"model":"chat","max_tokens":1e5,"messages":[]}`, `{"model":"chat","max_tokens":"100","messages":[]}`, `{"model":"chat","n":"10","messages":[]}`} {
		if resp, _ := post("/openai/-/v1/chat/completions", body, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", body, resp.StatusCode)
		}
	}
	// The provider route without a Content-Type is read all the same.
	_, sent = post("/provider/sim/-/v1/chat/completions", `{"model":"sim/model","max_tokens":100000,"messages":[]}`, map[string]string{"Accept-Encoding": "gzip"})
	if mt, _ := sent["max_tokens"].(float64); mt < 90_000 || mt > 100_000 {
		t.Errorf("provider route without a JSON type: sent %v, want max_tokens what is left", sent)
	}
	if h := up.lastRequest(t).Header.Get("Accept-Encoding"); h == "gzip" {
		t.Errorf("the client's Accept-Encoding reached the provider: its usage could not be read")
	}
}

// When a minute limit and a spent day budget both refuse, the answer is the day's: the client
// waits for it, not for the minute.
func TestARefusalNamesWhatTheRequestWaitsFor(t *testing.T) {
	up := newUpstream(t, simulator.Options{})
	// The body's estimate is 13 tokens: the first fits the day's 16, the second no longer does.
	g := budgetedGateway(t, up, nil, 1, testBudget("both", rpm(1), tpd(16)))
	if resp, data := rawChat(t, g, `{"model":"chat","max_tokens":5,"messages":[]}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("first: %d %s", resp.StatusCode, data)
	}
	resp, data := rawChat(t, g, `{"model":"chat","max_tokens":5,"messages":[]}`)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second: %d %s", resp.StatusCode, data)
	}
	if e := decodeError(t, data); e.Error.Code != "budget_exhausted" {
		t.Errorf("refused as %q, want budget_exhausted (the day is spent; %s tokens left): %s", e.Error.Code, resp.Header.Get("X-Ratelimit-Remaining-Tokens"), data)
	}
}

// settled waits until budget has counted between lo and hi tokens, as settled.
func settled(t *testing.T, g *gw, budget string, lo, hi float64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		got := counter(t, g.reg, "infergate_budget_used_total", map[string]string{"budget": budget, "unit": "tokens"})
		if got < lo || got > hi {
			return errors.New("tokens settled: " + strconv.FormatFloat(got, 'f', -1, 64))
		}
		return nil
	})
}

// A budget on an entity holds for the virtual models that target it: an alias is no way
// around it.
func TestBudgetOnAnEntityHoldsThroughAVirtualModel(t *testing.T) {
	up := newUpstream(t, simulator.Options{})
	l, err := quota.NewLimiter(quota.LimiterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := testBudget("chat-two-a-minute", rpm(2))
	b.Entities = []string{"chat"}
	spec := routing.Spec{
		Providers: []routing.ProviderSpec{provider("team-a", "sim", up.srv.URL)},
		Entities: []routing.EntitySpec{entity("team-a", "chat", backend("team-a", "sim", "sim/model")),
			{Workspace: "team-a", Name: "alias", Targets: []routing.TargetSpec{{Workspace: "team-a", Name: "chat", Weight: 1}}}},
		Budgets: []*quota.Budget{b},
	}
	g := newGateway(t, spec, gateway.Options{Limiter: l})
	for i, model := range []string{"alias", "chat", "alias"} {
		resp, data := rawChat(t, g, `{"model":"`+model+`","messages":[]}`)
		want := http.StatusOK
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Errorf("request %d for %s: %d %s, want %d", i+1, model, resp.StatusCode, data, want)
		}
	}
}
