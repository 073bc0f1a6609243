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

package controllers_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/controllers"
)

func modelServer(ns, name string, engine inferencev1alpha1.Engine, served string) *inferencev1alpha1.Deployment {
	return &inferencev1alpha1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: inferencev1alpha1.DeploymentSpec{
			ServedModelName: served,
			Image:           "nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5",
			Engine:          engine,
		},
	}
}

// markWorkload sets the apps/v1 Deployment's status as the deployment controller of a real
// cluster would. envtest runs no kube-controller-manager and no kubelet, so nothing else does.
func markWorkload(t *testing.T, ns, name string, available bool, conds ...appsv1.DeploymentCondition) {
	t.Helper()
	// The controller may apply the workload between our read and write: retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var w appsv1.Deployment
		if err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, &w); err != nil {
			return err
		}
		w.Status.ObservedGeneration = w.Generation
		w.Status.Replicas = 1
		w.Status.Conditions = slices.Clone(conds)
		if available {
			w.Status.ReadyReplicas, w.Status.AvailableReplicas, w.Status.UpdatedReplicas = 1, 1, 1
			w.Status.Conditions = append(w.Status.Conditions, appsv1.DeploymentCondition{
				Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastTransitionTime: metav1.Now()})
		}
		return k8s.Status().Update(ctx(), &w)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func phaseIs(t *testing.T, d *inferencev1alpha1.Deployment, phase inferencev1alpha1.DeploymentPhase) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(ctx(), key(d), d); err != nil {
			return err
		}
		if d.Status.Phase != phase {
			return fmt.Errorf("phase %q, want %q", d.Status.Phase, phase)
		}
		return nil
	})
}

func TestDeploymentRunsANIMAndBecomesAProvider(t *testing.T) {
	ns := namespace(t)
	d := modelServer(ns, "llama-nim", inferencev1alpha1.EngineNIM, "meta/llama-3.2-1b-instruct")
	d.Spec.GPUs = 2
	d.Spec.Env = []corev1.EnvVar{{Name: "NGC_API_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "ngc"}, Key: "key"}}}}
	d.Spec.Storage = &inferencev1alpha1.DeploymentStorage{Size: resource.MustParse("50Gi")}
	d.Spec.Tolerations = []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists}}
	create(t, d)
	phaseIs(t, d, inferencev1alpha1.PhaseCreated)

	var w appsv1.Deployment
	if err := k8s.Get(ctx(), key(d), &w); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(&w, d) {
		t.Error("the apps/v1 Deployment has no controller reference to the Deployment")
	}
	c := w.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["NIM_SERVED_MODEL_NAME"] != "meta/llama-3.2-1b-instruct" || env["NIM_SERVER_PORT"] != "8000" || env["NIM_CACHE_PATH"] != "/opt/nim/.cache" {
		t.Errorf("env %v", env)
	}
	if _, ok := env["NGC_API_KEY"]; !ok {
		t.Error("the user's env is missing")
	}
	if got := c.Resources.Limits["nvidia.com/gpu"]; got.Value() != 2 {
		t.Errorf("GPU limit %v", got)
	}
	if c.StartupProbe == nil || c.StartupProbe.HTTPGet.Path != "/v1/health/ready" || c.ReadinessProbe.HTTPGet.Path != "/v1/health/ready" {
		t.Errorf("probes %+v %+v", c.StartupProbe, c.ReadinessProbe)
	}
	if c.StartupProbe.FailureThreshold != 120 {
		t.Errorf("startup probe allows %d failures, want 120 (20m by 10s)", c.StartupProbe.FailureThreshold)
	}
	if len(w.Spec.Template.Spec.Tolerations) != 1 || !slices.ContainsFunc(w.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.PersistentVolumeClaim != nil }) {
		t.Errorf("pod spec %+v", w.Spec.Template.Spec)
	}
	var svc corev1.Service
	if err := k8s.Get(ctx(), key(d), &svc); err != nil || svc.Spec.Ports[0].Port != 8000 || !metav1.IsControlledBy(&svc, d) {
		t.Errorf("service %+v: %v", svc.Spec, err)
	}
	var pvc corev1.PersistentVolumeClaim
	if err := k8s.Get(ctx(), key(d), &pvc); err != nil || pvc.Spec.Resources.Requests.Storage().String() != "50Gi" {
		t.Errorf("claim %+v: %v", pvc.Spec, err)
	}

	markWorkload(t, ns, d.Name, false)
	phaseIs(t, d, inferencev1alpha1.PhasePending)
	markWorkload(t, ns, d.Name, true)
	phaseIs(t, d, inferencev1alpha1.PhaseReady)

	var phases []string
	for _, h := range d.Status.History {
		phases = append(phases, string(h.Phase))
	}
	if strings.Join(phases, ",") != "Created,Pending,Ready" || d.Status.URL != "http://llama-nim."+ns+".svc:8000" ||
		d.Status.Provider != "llama-nim" || d.Status.ModelEntity != "meta-llama-3-2-1b-instruct" || d.Status.AvailableReplicas != 1 {
		t.Errorf("status %+v", d.Status)
	}
	var p inferencev1alpha1.Provider
	if err := k8s.Get(ctx(), key(d), &p); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(&p, d) || p.Spec.Service == nil || p.Spec.Service.Name != "llama-nim" || p.Spec.Service.Port != 8000 ||
		!slices.Equal(p.Spec.ServedModels, []string{"meta/llama-3.2-1b-instruct"}) || p.Spec.HealthPath != "/v1/health/ready" {
		t.Errorf("provider %+v", p)
	}
	// The gateway reads NIM's queue from its metrics, on the API server's default interval.
	if m := p.Spec.Metrics; m == nil || m.Path != "/v1/metrics" || m.Port != nil || m.Interval == nil || m.Interval.Duration != 200*time.Millisecond {
		t.Errorf("provider metrics %+v", m)
	}
	var e inferencev1alpha1.ModelEntity
	if err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "meta-llama-3-2-1b-instruct"}, &e); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(&e, d) || e.Spec.ServedModelName != "meta/llama-3.2-1b-instruct" {
		t.Errorf("entity %+v", e)
	}

	// Deleting the Deployment removes everything it created.
	if err := k8s.Delete(ctx(), d); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{d, &p, &e, &w, &svc} {
		eventually(t, 20*time.Second, func() error {
			if err := k8s.Get(ctx(), client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still exists (%v), finalizers %v", obj, obj.GetName(), err, obj.GetFinalizers())
			}
			return nil
		})
	}
	// A PVC keeps the API server's kubernetes.io/pvc-protection finalizer until the
	// kube-controller-manager, which envtest lacks, sees no pod using it: deleted, it waits for
	// that finalizer alone.
	eventually(t, 20*time.Second, func() error {
		err := k8s.Get(ctx(), client.ObjectKeyFromObject(&pvc), &pvc)
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		case pvc.DeletionTimestamp.IsZero() || !slices.Equal(pvc.Finalizers, []string{"kubernetes.io/pvc-protection"}):
			return fmt.Errorf("PVC %s not deleted: deletion timestamp %v, finalizers %v", pvc.Name, pvc.DeletionTimestamp, pvc.Finalizers)
		}
		return nil
	})
}

func TestDeploymentLeavesTheUsersModelEntityAlone(t *testing.T) {
	ns := namespace(t)
	mine := entity(ns, "qwen-qwen2-5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct")
	mine.Spec.Description = "the platform team's own"
	create(t, mine)
	d := modelServer(ns, "qwen", inferencev1alpha1.EngineVLLM, "Qwen/Qwen2.5-7B-Instruct")
	d.Spec.Image = "vllm/vllm-openai:v0.11.0"
	d.Spec.Args = []string{"--model", "Qwen/Qwen2.5-7B-Instruct"}
	create(t, d)
	phaseIs(t, d, inferencev1alpha1.PhaseCreated)

	var w appsv1.Deployment
	if err := k8s.Get(ctx(), key(d), &w); err != nil {
		t.Fatal(err)
	}
	args := strings.Join(w.Spec.Template.Spec.Containers[0].Args, " ")
	if args != "--model Qwen/Qwen2.5-7B-Instruct --served-model-name Qwen/Qwen2.5-7B-Instruct --port 8000" {
		t.Errorf("vLLM args %q", args)
	}
	if p := w.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path; p != "/health" {
		t.Errorf("vLLM health path %q", p)
	}

	markWorkload(t, ns, d.Name, true)
	phaseIs(t, d, inferencev1alpha1.PhaseReady)
	if err := k8s.Delete(ctx(), d); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(ctx(), key(d), d); !apierrors.IsNotFound(err) {
			return fmt.Errorf("deployment still there: %v", err)
		}
		return nil
	})
	if err := k8s.Get(ctx(), key(mine), mine); err != nil {
		t.Fatalf("the user's ModelEntity is gone: %v", err)
	}
	if len(mine.OwnerReferences) != 0 || mine.Spec.Description != "the platform team's own" {
		t.Errorf("the user's ModelEntity was touched: %+v", mine)
	}
}

func TestDeploymentThatNeverStartsFails(t *testing.T) {
	ns := namespace(t)
	d := modelServer(ns, "stuck", inferencev1alpha1.EngineGeneric, "acme/model")
	d.Spec.HealthPath = "/ready"
	create(t, d)
	phaseIs(t, d, inferencev1alpha1.PhaseCreated)
	markWorkload(t, ns, d.Name, false, appsv1.DeploymentCondition{
		Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		Message: `ReplicaSet "stuck-5d8f" has timed out progressing.`, LastTransitionTime: metav1.Now()})
	phaseIs(t, d, inferencev1alpha1.PhaseFailed)
	c := readyReason(t, d, inferencev1alpha1.ReasonFailed)
	if !strings.Contains(c.Message, "has timed out progressing") {
		t.Errorf("message %q", c.Message)
	}
}

// An object of the Deployment's name that it does not control is someone else's: the
// Deployment reports the conflict and never writes or deletes it, not even when it is deleted.
func TestDeploymentLeavesObjectsOfItsNameItDoesNotOwnAlone(t *testing.T) {
	theirs := map[string]string{"app.kubernetes.io/name": "theirs"}
	tests := []struct {
		name    string
		kind    string // as the condition names it
		obj     func(ns, name string) client.Object
		storage bool
	}{
		{name: "web", kind: "Service", obj: func(ns, name string) client.Object {
			return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: theirs},
				Spec: corev1.ServiceSpec{Selector: theirs, Ports: []corev1.ServicePort{{Name: "web", Port: 8000}}}}
		}},
		{name: "data", kind: "PersistentVolumeClaim", storage: true, obj: func(ns, name string) client.Object {
			return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: theirs},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}}}}
		}},
		{name: "app", kind: "apps/v1 Deployment", obj: func(ns, name string) client.Object {
			return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: theirs},
				Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: theirs}, Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: theirs}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}}}
		}},
		{name: "api", kind: "Provider", obj: func(ns, name string) client.Object {
			return provider(ns, name, "http://theirs.example:8000", nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			ns := namespace(t)
			other := tt.obj(ns, tt.name)
			create(t, other)
			before := snapshotOf(t, other)

			d := modelServer(ns, tt.name, inferencev1alpha1.EngineVLLM, "acme/model")
			if tt.storage {
				d.Spec.Storage = &inferencev1alpha1.DeploymentStorage{Size: resource.MustParse("10Gi")}
			}
			create(t, d)
			// Reconciled: the controller has written status for this generation.
			eventually(t, 20*time.Second, func() error {
				if err := k8s.Get(ctx(), key(d), d); err != nil {
					return err
				}
				if d.Status.ObservedGeneration != d.Generation || d.Status.Phase == "" {
					return errorf("deployment %s not reconciled yet: %+v", d.Name, d.Status)
				}
				return nil
			})
			if after := snapshotOf(t, other); !equality.Semantic.DeepEqual(before, after) {
				t.Errorf("the %s %s that the Deployment does not own was changed:\nbefore %+v\nafter  %+v", tt.kind, tt.name, before, after)
			}
			want := tt.kind + " named " + tt.name + " exists and does not belong to this Deployment"
			c := meta.FindStatusCondition(d.Status.Conditions, inferencev1alpha1.ConditionReady)
			if c == nil || c.Reason != string(inferencev1alpha1.ReasonFailed) || !strings.Contains(c.Message, want) ||
				!strings.Contains(c.Message, "delete or rename that "+tt.kind+", or give this Deployment another name") {
				t.Errorf("Ready condition %+v, want reason Failed and a message that says %q and what to do", c, want)
			} else {
				eventually(t, 20*time.Second, func() error {
					if !slices.Contains(eventsFor(t, d), string(inferencev1alpha1.ReasonFailed)) {
						return errorf("no Failed event for deployment %s: %v", d.Name, eventsFor(t, d))
					}
					return nil
				})
			}
			if d.Status.Phase != inferencev1alpha1.PhaseFailed || d.Status.URL != "" {
				t.Errorf("phase %q and URL %q, want phase Failed and no URL: the Deployment serves nothing", d.Status.Phase, d.Status.URL)
			}

			if err := k8s.Delete(ctx(), d); err != nil {
				t.Fatal(err)
			}
			eventually(t, 20*time.Second, func() error {
				if err := k8s.Get(ctx(), key(d), d); !apierrors.IsNotFound(err) {
					return errorf("deployment %s still there: %v", d.Name, err)
				}
				return nil
			})
			if after := snapshotOf(t, other); !equality.Semantic.DeepEqual(before, after) {
				t.Errorf("the %s %s did not survive the Deployment's deletion untouched:\nbefore %+v\nafter  %+v", tt.kind, tt.name, before, after)
			}
		})
	}
}

// When the object in the way goes, the Deployment takes the name without being edited, and
// owns what it creates: a field dropped from its spec leaves the object too.
func TestDeploymentTakesTheNameOnceTheOtherObjectIsGone(t *testing.T) {
	ns := namespace(t)
	theirs := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	create(t, theirs)
	d := modelServer(ns, "web", inferencev1alpha1.EngineVLLM, "acme/model")
	d.Spec.Env = []corev1.EnvVar{{Name: "KEEP", Value: "1"}, {Name: "DROP", Value: "1"}}
	create(t, d)
	readyReason(t, d, inferencev1alpha1.ReasonFailed)

	if err := k8s.Delete(ctx(), theirs); err != nil {
		t.Fatal(err)
	}
	phaseIs(t, d, inferencev1alpha1.PhaseCreated)
	var svc corev1.Service
	eventually(t, 20*time.Second, func() error {
		if err := k8s.Get(ctx(), key(d), &svc); err != nil {
			return err
		}
		if !metav1.IsControlledBy(&svc, d) || svc.Spec.Selector[controllers.LabelDeployment] != "web" {
			return errorf("service %s is not the Deployment's: owners %v, selector %v", svc.Name, svc.OwnerReferences, svc.Spec.Selector)
		}
		return nil
	})
	if d.Status.URL != "http://web."+ns+".svc:8000" {
		t.Errorf("status URL %q", d.Status.URL)
	}

	// What the controller created, it alone manages, by server-side apply: a port or an
	// environment variable dropped from the spec is removed, not left behind.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx(), key(d), d); err != nil {
			return err
		}
		d.Spec.Port = 9000
		d.Spec.Env = d.Spec.Env[:1]
		return k8s.Update(ctx(), d)
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		var w appsv1.Deployment
		if err := k8s.Get(ctx(), key(d), &svc); err != nil {
			return err
		}
		if err := k8s.Get(ctx(), key(d), &w); err != nil {
			return err
		}
		var ports []int32
		for _, p := range svc.Spec.Ports {
			ports = append(ports, p.Port)
		}
		var env []string
		for _, e := range w.Spec.Template.Spec.Containers[0].Env {
			env = append(env, e.Name)
		}
		if !slices.Equal(ports, []int32{9000}) || !slices.Equal(env, []string{"KEEP"}) {
			return errorf("service ports %v, want [9000]; env %v, want [KEEP]", ports, env)
		}
		return nil
	})
}

// snapshotOf reads obj again and returns what someone else's object must keep: its labels,
// owners, deletion state and spec.
func snapshotOf(t *testing.T, obj client.Object) map[string]any {
	t.Helper()
	if err := k8s.Get(ctx(), key(obj), obj); err != nil {
		t.Fatalf("read %T %s: %v", obj, obj.GetName(), err)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"labels":            obj.GetLabels(),
		"ownerReferences":   obj.GetOwnerReferences(),
		"deletionTimestamp": obj.GetDeletionTimestamp(),
		"spec":              u["spec"],
	}
}
