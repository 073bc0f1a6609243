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
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// onlyInKustomize are the objects that config/default has and the chart deliberately has not.
var onlyInKustomize = map[objectKey]string{
	{Kind: "Namespace", Name: releaseNamespace}: "helm install --namespace infergate-system --create-namespace creates the release namespace",
}

// identityLabels must be equal on both sides, as must the labels that aggregate ClusterRoles
// into the built-in admin, edit and view roles; the others (helm.sh/chart, managed-by, version,
// part-of) say who installed an object and may differ.
var identityLabels = []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
	"rbac.authorization.k8s.io/aggregate-to-admin", "rbac.authorization.k8s.io/aggregate-to-edit", "rbac.authorization.k8s.io/aggregate-to-view"}

// TestChartDefaultsMatchKustomize checks that `helm template infergate charts/infergate -n
// infergate-system` and `kubectl kustomize config/default` deploy the same objects: the same
// kinds, namespaces and names, equal specs, RBAC rules granting the same permissions, and the same
// manager pod.
func TestChartDefaultsMatchKustomize(t *testing.T) {
	chart := index(t, "the chart", parseManifest(t, helmTemplate(t, "--include-crds")))
	kust := index(t, kustomizeDefault, parseManifest(t, kustomize(t, kustomizeDefault)))

	var onlyChart, onlyKust []string
	for k := range chart {
		if _, ok := kust[k]; !ok {
			onlyChart = append(onlyChart, k.String())
		}
	}
	for k := range kust {
		if _, ok := chart[k]; !ok {
			if _, expected := onlyInKustomize[k]; !expected {
				onlyKust = append(onlyKust, k.String())
			}
		}
	}
	for k, why := range onlyInKustomize {
		if _, ok := kust[k]; !ok {
			t.Errorf("%s should create %s (%s)", kustomizeDefault, k, why)
		}
		if _, ok := chart[k]; ok {
			t.Errorf("the chart should not create %s: %s", k, why)
		}
	}
	if len(onlyChart) > 0 || len(onlyKust) > 0 {
		sort.Strings(onlyChart)
		sort.Strings(onlyKust)
		t.Errorf("the chart's defaults and %s create different objects:\n  only in the chart: %v\n  only in %s: %v",
			kustomizeDefault, onlyChart, kustomizeDefault, onlyKust)
	}

	keys := make([]objectKey, 0, len(chart))
	for k := range chart {
		if _, ok := kust[k]; ok {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		c, kz := chart[k], kust[k]
		var diffs []string
		for _, l := range identityLabels {
			if c.GetLabels()[l] != kz.GetLabels()[l] {
				diffs = append(diffs, "metadata.labels["+l+"]: chart "+show(c.GetLabels()[l])+", kustomize "+show(kz.GetLabels()[l]))
			}
		}
		if k.Kind == "ClusterRole" || k.Kind == "Role" {
			missing, extra := compareRules(t, rulesOf(t, kz), rulesOf(t, c))
			if len(missing) > 0 || len(extra) > 0 {
				diffs = append(diffs, "rules: only in kustomize "+strings.Join(missing, ", ")+"; only in the chart "+strings.Join(extra, ", "))
			}
		}
		if k.Kind == "Deployment" {
			for _, l := range identityLabels {
				cl, _, _ := unstructured.NestedString(c.Object, "spec", "template", "metadata", "labels", l)
				kl, _, _ := unstructured.NestedString(kz.Object, "spec", "template", "metadata", "labels", l)
				if cl != kl {
					diffs = append(diffs, "spec.template.metadata.labels["+l+"]: chart "+show(cl)+", kustomize "+show(kl))
				}
			}
		}
		diffs = append(diffs, diffValues("", essence(c), essence(kz))...)
		if len(diffs) > 0 {
			t.Errorf("%s differs between the chart (got) and %s (want):\n  %s", k, kustomizeDefault, strings.Join(diffs, "\n  "))
		}
	}
}

// essence is what must be equal between the chart and kustomize: the object without its
// metadata (names and namespaces are compared as keys, labels apart), the pod template's
// metadata (helm adds its labels there too) and RBAC rules (compared as permissions).
func essence(o *unstructured.Unstructured) map[string]any {
	c := o.DeepCopy().Object
	delete(c, "metadata")
	delete(c, "status")
	switch o.GetKind() {
	case "ClusterRole", "Role":
		delete(c, "rules")
	case "Deployment":
		unstructured.RemoveNestedField(c, "spec", "template", "metadata")
	}
	return c
}
