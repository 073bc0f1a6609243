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

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/infergate/infergate/internal/redistest"
	"github.com/infergate/infergate/internal/testenv"
)

// TestDashboardAndAlertsUseExportedMetrics parses every PromQL expression of the Grafana
// dashboard and of the PrometheusRule with Prometheus's parser, and checks that every metric
// they use is on the /metrics of a running manager after traffic that exercises them all:
// calls and streams, a provider that passes its probes but fails every call (retries and
// ejections), model servers' metrics of two engines, and leader election. A renamed metric, or
// a panel or alert left behind by one, fails here; so does a metric the README does not list.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	queries := dashboardQueries(t, filepath.Join(root, "config", "grafana", "infergate-dashboard.json"))
	queries = append(queries, alertQueries(t, filepath.Join(root, "config", "prometheus", "prometheusrule.yaml"))...)
	used := map[string][]string{} // metric → where
	promql := parser.NewParser(parser.Options{})
	for _, q := range queries {
		expr, err := promql.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, q.expr)
			continue
		}
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			if vs, ok := node.(*parser.VectorSelector); ok {
				name := vs.Name
				for _, m := range vs.LabelMatchers {
					if m.Name == model.MetricNameLabel {
						name = m.Value
					}
				}
				used[name] = append(used[name], q.where)
			}
			return nil
		})
	}
	if len(used) < 20 {
		t.Fatalf("only %d metrics found in the dashboard and the alerts: %v", len(used), used)
	}

	redis := redistest.Start(t)
	c := startCluster(t, "--leader-elect", "--leader-election-namespace", "infergate-system", "--budget-store", redis.URL())
	good := newUpstream(t, "sim-a", "", served)
	// Passes its probes, fails every call with a 503, and serves NIM's metrics (with a
	// capacity, num_request_max).
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/models":
			fmt.Fprintf(w, `{"object":"list","data":[{"id":%q,"object":"model","owned_by":"test"}]}`, served)
		case "/v1/metrics":
			fmt.Fprint(w, "num_requests_running 1\nnum_requests_waiting 0\nnum_request_max 8\ngpu_cache_usage_perc 0.25\n")
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(failing.Close)
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim-a, namespace: team}
spec:
  url: ` + good.srv.URL + `
  metrics: {interval: 200ms}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: failing, namespace: team}
spec:
  url: ` + failing.URL + `
  metrics: {path: /v1/metrics, interval: 200ms}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama, namespace: team}
spec: {servedModelName: ` + served + `, loadBalancing: RoundRobin}
`)
	c.run("wait", "--for=condition=Ready", "-n", "team", "modelentity/llama", "provider/sim-a", "provider/failing", "--timeout=30s")
	c.eventually(10*time.Second, func() error {
		if s := c.status("team", "llama"); s != 200 {
			return fmt.Errorf("status %d", s)
		}
		return nil
	})

	client := c.openai("team")
	for range 12 {
		if _, err := client.Chat.Completions.New(ctxTimeout(t, 10*time.Second), chat("llama")); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		params := chat("llama")
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctxTimeout(t, 10*time.Second), params)
		for stream.Next() {
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
	}

	// A model whose only server says it is full: its request waits in the gateway's queue for
	// the 200ms its entity allows, then gets 429; the fair-share counters go to the store.
	full := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/models":
			fmt.Fprint(w, `{"object":"list","data":[{"id":"busy-model","object":"model","owned_by":"test"}]}`)
		case "/v1/metrics":
			fmt.Fprint(w, "num_requests_running 8\nnum_requests_waiting 0\nnum_request_max 8\n")
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(full.Close)
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: full, namespace: team}
spec:
  url: ` + full.URL + `
  metrics: {path: /v1/metrics, interval: 200ms}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: busy, namespace: team}
spec: {servedModelName: busy-model, queue: {maxTime: 200ms}}
`)
	c.run("wait", "--for=condition=Ready", "-n", "team", "modelentity/busy", "provider/full", "--timeout=30s")
	c.eventually(10*time.Second, func() error {
		_, err := client.Chat.Completions.New(ctxTimeout(t, 10*time.Second), chat("busy"))
		var e *openai.Error
		if !errors.As(err, &e) || e.StatusCode != http.StatusTooManyRequests || e.Code != "queue_timeout" {
			return fmt.Errorf("the saturated model answered %v, want 429 queue_timeout", err)
		}
		return nil
	})

	// A virtual model over busy, then llama: busy's pool is full, so its requests go to llama
	// at once, counted by target and as fallbacks.
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: assistant, namespace: team}
spec:
  targets: [{name: busy}, {name: llama, order: 1}]
`)
	c.run("wait", "--for=condition=Ready", "-n", "team", "modelentity/assistant", "--timeout=30s")
	c.eventually(10*time.Second, func() error {
		resp, err := client.Chat.Completions.New(ctxTimeout(t, 10*time.Second), chat("assistant"))
		if err != nil {
			return err
		}
		if resp.Model != "team/assistant" || !strings.Contains(resp.Choices[0].Message.Content, "sim-a") {
			return fmt.Errorf("the virtual model answered %+v, want sim-a's answer named team/assistant", resp)
		}
		return nil
	})

	// A budget that refuses the third request: decisions, refusals, usage, store calls.
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: InferenceBudget
metadata: {name: minute, namespace: team}
spec:
  limits: {requestsPerSecond: 2, tokensPerMinute: 1000000}
`)
	c.run("wait", "--for=condition=Ready", "-n", "team", "inferencebudget/minute", "--timeout=30s")
	c.eventually(10*time.Second, func() error {
		if s := c.status("team", "llama"); s != http.StatusTooManyRequests {
			return fmt.Errorf("status %d, want a refusal", s)
		}
		return nil
	})

	families := map[string]string{} // name → type, of the families with samples
	resp, err := http.Get(c.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := text.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range parsed {
		if len(f.GetMetric()) > 0 {
			families[name] = f.GetType().String()
		}
	}
	var missing []string
	for name, where := range used {
		if !exported(families, name) {
			slices.Sort(where)
			missing = append(missing, fmt.Sprintf("%s (in %s)", name, strings.Join(slices.Compact(where), ", ")))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("metrics used but not on the manager's /metrics:\n  %s", strings.Join(missing, "\n  "))
	}

	// And the README's table documents every metric of infergate's own.
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var undocumented []string
	for name := range families {
		if strings.HasPrefix(name, "infergate_") && !strings.Contains(string(readme), "`"+name+"`") {
			undocumented = append(undocumented, name)
		}
	}
	if len(undocumented) > 0 {
		slices.Sort(undocumented)
		t.Errorf("metrics missing from the README's Metrics table: %s", strings.Join(undocumented, ", "))
	}
}

// exported tells whether the manager exports name: a family, or a histogram's series.
func exported(families map[string]string, name string) bool {
	if _, ok := families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] == "HISTOGRAM" {
			return true
		}
	}
	return false
}

type query struct{ where, expr string }

// grafanaVariables are what Grafana substitutes in queries, as Prometheus would see them.
var grafanaVariables = regexp.MustCompile(`\$(__rate_interval|__interval|__range|workspace|entity|provider)\b`)

// labelValues is Grafana's query of a variable's values.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// dashboardQueries returns the queries of every panel and template variable.
func dashboardQueries(t *testing.T, path string) []query {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	readInto(t, path, json.Unmarshal, &d)
	substitute := func(expr string) string {
		return grafanaVariables.ReplaceAllStringFunc(expr, func(v string) string {
			if strings.HasPrefix(v, "$__") {
				return "5m"
			}
			return ".*"
		})
	}
	var out []query
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, query{"dashboard panel " + p.Title, substitute(tg.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)["query"].(string)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q)
			continue
		}
		out = append(out, query{"dashboard variable " + v.Name, substitute(m[1])})
	}
	if len(out) == 0 {
		t.Fatalf("%s: no queries", path)
	}
	return out
}

// alertQueries returns the expression of every rule of the PrometheusRule.
func alertQueries(t *testing.T, path string) []query {
	t.Helper()
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	readInto(t, path, func(b []byte, v any) error { return yaml.Unmarshal(b, v) }, &rule)
	var out []query
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			out = append(out, query{"alert " + r.Alert + r.Record, r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", path)
	}
	return out
}

func readInto(t *testing.T, path string, unmarshal func([]byte, any) error, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
