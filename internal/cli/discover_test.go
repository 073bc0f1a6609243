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

package cli

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/testenv"
)

func TestRoutePrefixIsTheGateways(t *testing.T) {
	if routePrefix != gateway.Prefix {
		t.Errorf("routePrefix %q, the gateway serves %q", routePrefix, gateway.Prefix)
	}
}

// The lookup behind the port-forward: which Service, which pod, which port. envtest runs no
// pods, so the pods are objects whose status the test writes, as a kubelet would.
func TestFindGateway(t *testing.T) {
	env, err := testenv.Start(testenv.Options{WithoutCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cs := kubernetes.NewForConfigOrDie(env.Config)
	ctx := context.Background()
	create := func(objs ...any) {
		t.Helper()
		for _, o := range objs {
			var err error
			switch o := o.(type) {
			case *corev1.Namespace:
				_, err = cs.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
			case *corev1.Service:
				_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *corev1.Pod:
				status := o.Status
				var p *corev1.Pod
				if p, err = cs.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err == nil {
					p.Status = status
					_, err = cs.CoreV1().Pods(o.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	selector := map[string]string{"app.kubernetes.io/name": "infergate", "app.kubernetes.io/component": "manager"}
	service := func(ns, name string, targetPort intstr.IntOrString) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app.kubernetes.io/component": "gateway"}},
			Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: targetPort}}}}
	}
	pod := func(ns, name string, ready bool) *corev1.Pod {
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: selector},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "manager", Image: "ghcr.io/infergate/infergate:0.1.0",
				Ports: []corev1.ContainerPort{{Name: "gateway", ContainerPort: 8000}, {Name: "metrics", ContainerPort: 8080}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}}}
	}

	if _, err := findGateway(ctx, cs, ""); err == nil || !strings.Contains(err.Error(), "found no gateway Service") {
		t.Errorf("no gateway installed: %v", err)
	}

	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infergate-system"}},
		service("infergate-system", "infergate-gateway", intstr.FromString("gateway")),
		// The metrics Service selects the same pods, without the gateway's label.
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "infergate-system", Name: "infergate-metrics", Labels: map[string]string{"app.kubernetes.io/component": "metrics"}},
			Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{Port: 8080}}}},
		pod("infergate-system", "infergate-a", false))
	if _, err := findGateway(ctx, cs, ""); err == nil || !strings.Contains(err.Error(), "has no ready pod (1 pods found)") {
		t.Errorf("no ready pod: %v", err)
	}

	create(pod("infergate-system", "infergate-b", true))
	target, err := findGateway(ctx, cs, "")
	if err != nil {
		t.Fatal(err)
	}
	if target.Service.Name != "infergate-gateway" || target.Pod.Name != "infergate-b" || target.Port != 8000 {
		t.Errorf("found Service %s, pod %s, port %d; want infergate-gateway, the ready pod infergate-b, and the port named gateway (8000)",
			target.Service.Name, target.Pod.Name, target.Port)
	}

	// A second installation: the lookup asks which, unless told.
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
		service("other", "ig-gateway", intstr.FromInt32(9000)), pod("other", "ig-a", true))
	if _, err := findGateway(ctx, cs, ""); err == nil || !strings.Contains(err.Error(), "infergate-system/infergate-gateway, other/ig-gateway") ||
		!strings.Contains(err.Error(), "--gateway-namespace") {
		t.Errorf("two gateways: %v", err)
	}
	target, err = findGateway(ctx, cs, "other")
	if err != nil || target.Pod.Name != "ig-a" || target.Port != 9000 {
		t.Errorf("--gateway-namespace other: %+v, %v", target, err)
	}
}
