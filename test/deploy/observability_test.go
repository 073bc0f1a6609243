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

package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const (
	dashboardFile     = "config/grafana/infergate-dashboard.json"
	rulesFile         = "config/prometheus/prometheusrule.yaml"
	rulesTestFile     = "config/prometheus/prometheusrule_test.yaml"
	noLeaderAlert     = "InfergateNoLeader"
	dashboardInChart  = chartDir + "/files/infergate-dashboard.json"
	rulesInChart      = chartDir + "/files/prometheusrule.yaml"
	runbookURLPrefix  = "https://github.com/infergate/infergate/blob/main/README.md#"
	grafanaDatasource = "${datasource}"
)

// ruleGroups reads the rule groups of the PrometheusRule in config/prometheus.
func ruleGroups(t *testing.T) []any {
	t.Helper()
	var rule struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	readYAML(t, rulesFile, &rule)
	if len(rule.Spec.Groups) == 0 {
		t.Fatalf("%s has no rule groups", rulesFile)
	}
	return rule.Spec.Groups
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	readInto(t, path, func(b []byte, v any) error { return yaml.Unmarshal(b, v) }, into)
}

func readJSON(t *testing.T, path string, into any) {
	t.Helper()
	readInto(t, path, json.Unmarshal, into)
}

// readInto reads the file at path, relative to the repository root, into into.
func readInto(t *testing.T, path string, unmarshal func([]byte, any) error, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// alerts are the alerting rules of the groups.
type alert struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alertsOf(t *testing.T, groups []any) []alert {
	t.Helper()
	data, err := json.Marshal(groups)
	if err != nil {
		t.Fatal(err)
	}
	var gs []struct {
		Rules []alert `json:"rules"`
	}
	if err := json.Unmarshal(data, &gs); err != nil {
		t.Fatal(err)
	}
	var out []alert
	for _, g := range gs {
		out = append(out, g.Rules...)
	}
	return out
}

// TestAlertRules checks the alerts with promtool: the rules load, and the unit tests of
// config/prometheus pass, with a case where each alert fires and one where it stays quiet.
// Each alert has a severity, a summary, a description and a runbook in the README.
func TestAlertRules(t *testing.T) {
	promtool := promtoolTool.binary(t)
	dir := t.TempDir()
	rules, err := yaml.Marshal(map[string]any{"groups": ruleGroups(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(repoRoot, rulesTestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tests.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "tests.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// What the unit tests cover, alert by alert.
	var file struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &file); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range file.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alertsOf(t, ruleGroups(t)) {
		if !fires[a.Alert] || !quiet[a.Alert] {
			t.Errorf("%s: %s needs a case where %s fires and one where it stays quiet (fires %t, quiet %t)", rulesTestFile, a.Alert, a.Alert, fires[a.Alert], quiet[a.Alert])
		}
		if a.Labels["severity"] != "critical" && a.Labels["severity"] != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", a.Alert, a.Labels["severity"])
		}
		if a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
			t.Errorf("%s lacks a summary or a description", a.Alert)
		}
		if want := runbookURLPrefix + strings.ToLower(a.Alert); a.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", a.Alert, a.Annotations["runbook_url"], want)
		}
		if !bytes.Contains(readme, []byte("\n#### "+a.Alert+"\n")) {
			t.Errorf("README.md has no runbook for %s (a heading \"#### %s\" under Troubleshooting)", a.Alert, a.Alert)
		}
	}
}

// TestChartShipsTheDashboardAndAlerts checks that the chart's copies are those of config/, and
// that its ConfigMap and PrometheusRule carry them whole.
func TestChartShipsTheDashboardAndAlerts(t *testing.T) {
	for from, to := range map[string]string{dashboardFile: dashboardInChart, rulesFile: rulesInChart} {
		want, err := os.ReadFile(filepath.Join(repoRoot, from))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(repoRoot, to))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not a copy of %s (err %v): run make manifests", to, from, err)
		}
	}

	objs := parseManifest(t, helmTemplate(t, "--values", allOptionsValues))
	cm := find(t, objs, "ConfigMap", "ig-dashboard")
	if cm.GetNamespace() != "monitoring" || cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetAnnotations()["grafana_folder"] != "Inference" {
		t.Errorf("dashboard ConfigMap: namespace %q, labels %v, annotations %v", cm.GetNamespace(), cm.GetLabels(), cm.GetAnnotations())
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "infergate.json")
	var got, want any
	if err := json.Unmarshal([]byte(data), &got); err != nil {
		t.Fatalf("the ConfigMap's infergate.json: %v", err)
	}
	readJSON(t, dashboardFile, &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the ConfigMap's infergate.json is not %s", dashboardFile)
	}

	rule := find(t, objs, "PrometheusRule", "ig")
	if rule.GetLabels()["release"] != "prometheus" {
		t.Errorf("PrometheusRule labels %v lack release: prometheus", rule.GetLabels())
	}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	if d := diffValues("spec.groups", groups, ruleGroups(t)); len(d) > 0 {
		t.Errorf("the chart's rule groups are not those of %s:\n  %s", rulesFile, strings.Join(d, "\n  "))
	}

	// Without leader election there is no leader to miss.
	objs = parseManifest(t, helmTemplate(t, "--set", "metrics.prometheusRule.enabled=true", "--set", "leaderElection.enabled=false", "--set", "replicaCount=1"))
	groups, _, _ = unstructured.NestedSlice(find(t, objs, "PrometheusRule", "infergate").Object, "spec", "groups")
	var names []string
	for _, a := range alertsOf(t, groups) {
		names = append(names, a.Alert)
	}
	for _, a := range alertsOf(t, ruleGroups(t)) {
		if slices.Contains(names, a.Alert) != (a.Alert != noLeaderAlert) {
			t.Errorf("without leader election the alerts are %v", names)
			break
		}
	}
}

// TestDashboard checks what Grafana needs of the dashboard: unique panel ids, every query on
// the chosen data source, and the workspace, entity and provider variables in use.
func TestDashboard(t *testing.T) {
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	readJSON(t, dashboardFile, &d)
	if d.UID == "" {
		t.Error("the dashboard has no uid: each import would make a new one")
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	ids := map[int]bool{}
	exprs := ""
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d is taken", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != grafanaDatasource || len(p.Targets) == 0 {
			t.Errorf("panel %q: no query on %s", p.Title, grafanaDatasource)
		}
		for _, tg := range p.Targets {
			exprs += tg.Expr + "\n"
		}
	}
	for _, v := range []string{"datasource", "workspace", "entity", "provider"} {
		if !slices.Contains(vars, v) {
			t.Errorf("no %s variable (variables %v)", v, vars)
		}
		if v != "datasource" && !regexp.MustCompile(`=~"\$`+v+`"`).MatchString(exprs) {
			t.Errorf("no query filters by $%s", v)
		}
	}
}
