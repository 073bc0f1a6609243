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
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// gatewayServiceSelector picks the gateway Service that the Helm chart and config/default
// create (app.kubernetes.io/component: gateway).
const gatewayServiceSelector = "app.kubernetes.io/component=gateway"

// defaultInstallNamespace is where the README installs infergate; it is searched when the
// caller may not list Services in every namespace.
const defaultInstallNamespace = "infergate-system"

// gatewayTarget is a gateway pod to port-forward to.
type gatewayTarget struct {
	Service *corev1.Service
	Pod     *corev1.Pod
	// Port is the pod's port that the Service sends gateway traffic to.
	Port int32
}

// findGateway finds the gateway Service (in namespace, or wherever it is) and a ready pod
// behind it.
func findGateway(ctx context.Context, cs kubernetes.Interface, namespace string) (*gatewayTarget, error) {
	services, err := gatewayServices(ctx, cs, namespace)
	if err != nil {
		return nil, err
	}
	switch len(services) {
	case 0:
		where := "any namespace"
		if namespace != "" {
			where = "namespace " + namespace
		}
		return nil, fmt.Errorf("found no gateway Service (label %s) in %s", gatewayServiceSelector, where)
	case 1:
	default:
		var names []string
		for _, s := range services {
			names = append(names, s.Namespace+"/"+s.Name)
		}
		return nil, fmt.Errorf("found several gateway Services (%s): choose one with --gateway-namespace", strings.Join(names, ", "))
	}
	svc := &services[0]
	if len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) == 0 {
		return nil, fmt.Errorf("Service %s/%s selects no pods or has no port", svc.Namespace, svc.Name)
	}
	pods, err := cs.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return nil, fmt.Errorf("list the pods of Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !podReady(pod) {
			continue
		}
		port, ok := targetPort(pod, svc.Spec.Ports[0].TargetPort)
		if !ok {
			continue
		}
		return &gatewayTarget{Service: svc, Pod: pod, Port: port}, nil
	}
	return nil, fmt.Errorf("Service %s/%s has no ready pod (%d pods found)", svc.Namespace, svc.Name, len(pods.Items))
}

// gatewayServices lists the gateway Services in namespace, or in every namespace the caller may
// list, else in the namespace the README installs into.
func gatewayServices(ctx context.Context, cs kubernetes.Interface, namespace string) ([]corev1.Service, error) {
	opts := metav1.ListOptions{LabelSelector: gatewayServiceSelector}
	list, err := cs.CoreV1().Services(namespace).List(ctx, opts)
	if namespace == "" && apierrors.IsForbidden(err) {
		list, err = cs.CoreV1().Services(defaultInstallNamespace).List(ctx, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("look for the gateway Service: %w", err)
	}
	return list.Items, nil
}

func podReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// targetPort resolves a Service's target port on a pod: a number, or a container port's name.
func targetPort(pod *corev1.Pod, tp intstr.IntOrString) (int32, bool) {
	if tp.Type == intstr.Int {
		return tp.IntVal, tp.IntVal > 0
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == tp.StrVal {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

// portForward forwards a local port on 127.0.0.1 to the target pod, as kubectl port-forward
// does (SPDY, or websockets where the API server offers them), until ctx ends, and returns the
// local base URL.
func portForward(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, t *gatewayTarget, errOut io.Writer) (string, error) {
	url := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(t.Pod.Namespace).Name(t.Pod.Name).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", err
	}
	var dialer httpstream.Dialer = spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	if tunnel, err := portforward.NewSPDYOverWebsocketDialer(url, cfg); err == nil {
		dialer = portforward.NewFallbackDialer(tunnel, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(int(t.Port))}, ctx.Done(), ready, io.Discard, errOut)
	if err != nil {
		return "", err
	}
	failed := make(chan error, 1)
	go func() { failed <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-failed:
		return "", err
	case <-ctx.Done():
		return "", ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		return "", fmt.Errorf("no local port: %v", err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(int(ports[0].Local)), nil
}
