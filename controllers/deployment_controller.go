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

package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/naming"
)

// finalizer lets the controller record the Deleting phase and remove what it created.
const finalizer = "inference.infergate.dev/cleanup"

// Defaults of a Deployment's model server.
const (
	defaultStartupTimeout = 20 * time.Minute
	containerName         = "model-server"
	portName              = "http"
)

// Objects are applied server-side (patch) and created when new; nothing is updated wholesale.
// +kubebuilder:rbac:groups=inference.infergate.dev,resources=deployments,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=inference.infergate.dev,resources=deployments/status,verbs=patch
// +kubebuilder:rbac:groups=inference.infergate.dev,resources=deployments/finalizers,verbs=update
// +kubebuilder:rbac:groups=inference.infergate.dev,resources=providers,verbs=create;patch;delete
// +kubebuilder:rbac:groups=inference.infergate.dev,resources=modelentities,verbs=create;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=create;patch;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create;patch;delete

// DeploymentReconciler runs a model server for each Deployment: an apps/v1 Deployment, a
// Service and optionally a PersistentVolumeClaim; once the server is available it creates the
// Provider of the same name and, unless one exists, a ModelEntity for the served model.
type DeploymentReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder recorder.EventRecorder
}

// Reconcile brings one Deployment's objects in line with its spec and reports its phase.
func (r *DeploymentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var d inferencev1alpha1.Deployment
	if err := r.Get(ctx, req.NamespacedName, &d); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !d.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &d)
	}
	if !controllerutil.ContainsFinalizer(&d, finalizer) {
		// Guarded by resourceVersion: the patch carries the whole list of finalizers.
		patch := client.MergeFromWithOptions(d.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(&d, finalizer)
		if err := r.Patch(ctx, &d, patch); apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: staleRetry}, nil
		} else if err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
	}

	next := d.Status.DeepCopy()
	next.ObservedGeneration = d.Generation
	phase, cond, err := r.reconcileServer(ctx, &d, next)
	if apierrors.IsConflict(err) {
		// An object of a name the cache had not seen yet: read again shortly.
		return ctrl.Result{RequeueAfter: staleRetry}, nil
	} else if err != nil {
		return ctrl.Result{}, err
	}
	if phase == inferencev1alpha1.PhaseReady {
		if cond, err = r.reconcileProvider(ctx, &d, next, cond); apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: staleRetry}, nil
		} else if err != nil {
			// A Provider of the name made since reconcileServer checked it is reported by the
			// check of the next attempt.
			return ctrl.Result{}, err
		}
	}
	r.setPhase(&d, next, phase, cond.Message)
	transition := readyChanged(d.Status.Conditions, cond)
	meta.SetStatusCondition(&next.Conditions, cond)
	if !equality.Semantic.DeepEqual(&d.Status, next) {
		before := d.DeepCopy()
		d.Status = *next
		stale, err := patchStatus(ctx, r.Client, &d, before)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("patch status of deployment %s: %w", req, err)
		}
		if stale {
			return ctrl.Result{RequeueAfter: staleRetry}, nil
		}
	}
	if transition {
		r.Recorder.Eventf(&d, nil, eventType(cond.Status), cond.Reason, "Reconcile", "%s", cond.Message)
		log.FromContext(ctx).Info("deployment phase", "phase", phase, "reason", cond.Reason)
	}
	return ctrl.Result{}, nil
}

// reconcileServer checks that the names of what the Deployment creates are free or its own,
// applies the storage, the workload and the Service, then maps the workload's state to a
// phase. An object of one of those names that is someone else's is never written: the
// Deployment fails, and says so.
func (r *DeploymentReconciler) reconcileServer(ctx context.Context, d *inferencev1alpha1.Deployment, next *inferencev1alpha1.DeploymentStatus) (inferencev1alpha1.DeploymentPhase, metav1.Condition, error) {
	objs, err := r.serverObjects(d)
	if err != nil {
		return "", metav1.Condition{}, err
	}
	provider, err := r.provider(d)
	if err != nil {
		return "", metav1.Condition{}, err
	}
	next.URL = "" // until the Service of that address is the Deployment's
	// Nothing is written while any of the names, the Provider's included, is taken.
	for _, obj := range append(objs, provider) {
		if _, err := ownedUID(ctx, r.Client, d, obj); err != nil {
			return nameTaken(d, err)
		}
	}
	for _, obj := range objs {
		if err := applyOwned(ctx, r.Client, d, obj); err != nil {
			return nameTaken(d, err)
		}
	}
	next.URL = serviceURL(d)
	var workload appsv1.Deployment
	if err := r.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: d.Name}, &workload); client.IgnoreNotFound(err) != nil {
		return "", metav1.Condition{}, fmt.Errorf("read the model server's apps/v1 Deployment: %w", err)
	}
	// Not found: just created, and not in the cache yet. Its creation brings the Deployment back.
	next.AvailableReplicas = workload.Status.AvailableReplicas
	return workloadPhase(d, &workload)
}

// nameTaken reports a *notOwnedError as the Failed phase, with a condition that says what to
// do; any other error is returned as it is.
func nameTaken(d *inferencev1alpha1.Deployment, err error) (inferencev1alpha1.DeploymentPhase, metav1.Condition, error) {
	var taken *notOwnedError
	if !errors.As(err, &taken) {
		return "", metav1.Condition{}, err
	}
	return inferencev1alpha1.PhaseFailed, readyCondition(metav1.ConditionFalse, inferencev1alpha1.ReasonFailed,
		taken.Error()+": delete or rename that "+taken.kind+", or give this Deployment another name", d.Generation), nil
}

// serverObjects are the model server's objects, each with its controller reference to d: the
// PersistentVolumeClaim when d asks for storage, the apps/v1 Deployment and the Service.
func (r *DeploymentReconciler) serverObjects(d *inferencev1alpha1.Deployment) ([]client.Object, error) {
	var objs []client.Object
	if d.Spec.Storage != nil {
		objs = append(objs, storage(d))
	}
	objs = append(objs, workload(d), service(d))
	for _, obj := range objs {
		if err := controllerutil.SetControllerReference(d, obj, r.Scheme); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

// workloadPhase maps an apps/v1 Deployment's status to a phase and a Ready condition.
func workloadPhase(d *inferencev1alpha1.Deployment, w *appsv1.Deployment) (inferencev1alpha1.DeploymentPhase, metav1.Condition, error) {
	gen := d.Generation
	progressing := findDeploymentCondition(w, appsv1.DeploymentProgressing)
	available := findDeploymentCondition(w, appsv1.DeploymentAvailable)
	switch {
	case d.Spec.Replicas != nil && *d.Spec.Replicas == 0:
		return inferencev1alpha1.PhasePending, readyCondition(metav1.ConditionFalse, inferencev1alpha1.ReasonScaledToZero, "spec.replicas is 0", gen), nil
	case progressing != nil && progressing.Status == corev1.ConditionFalse && progressing.Reason == "ProgressDeadlineExceeded":
		return inferencev1alpha1.PhaseFailed, readyCondition(metav1.ConditionFalse, inferencev1alpha1.ReasonFailed,
			"the model server did not become ready within spec.startupTimeout: "+progressing.Message+"; see kubectl describe pods -l "+LabelDeployment+"="+d.Name, gen), nil
	case w.Status.AvailableReplicas > 0 && available != nil && available.Status == corev1.ConditionTrue:
		return inferencev1alpha1.PhaseReady, readyCondition(metav1.ConditionTrue, inferencev1alpha1.ReasonReady,
			fmt.Sprintf("%d of %d replicas available", w.Status.AvailableReplicas, desiredReplicas(d)), gen), nil
	case w.Status.ObservedGeneration == 0:
		return inferencev1alpha1.PhaseCreated, readyCondition(metav1.ConditionFalse, inferencev1alpha1.ReasonProgressing, "model server objects created", gen), nil
	default:
		return inferencev1alpha1.PhasePending, readyCondition(metav1.ConditionFalse, inferencev1alpha1.ReasonProgressing,
			fmt.Sprintf("waiting for the model server: %d of %d replicas available", w.Status.AvailableReplicas, desiredReplicas(d)), gen), nil
	}
}

func findDeploymentCondition(w *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range w.Status.Conditions {
		if w.Status.Conditions[i].Type == t {
			return &w.Status.Conditions[i]
		}
	}
	return nil
}

func desiredReplicas(d *inferencev1alpha1.Deployment) int32 {
	if d.Spec.Replicas != nil {
		return *d.Spec.Replicas
	}
	return 1
}

// setPhase records a phase change in the bounded history.
func (r *DeploymentReconciler) setPhase(d *inferencev1alpha1.Deployment, next *inferencev1alpha1.DeploymentStatus, phase inferencev1alpha1.DeploymentPhase, message string) {
	if next.Phase == phase {
		return
	}
	next.Phase = phase
	next.History = append(next.History, inferencev1alpha1.PhaseTransition{Phase: phase, Time: metav1.Now(), Message: truncate(message, 1024)})
	if n := len(next.History); n > inferencev1alpha1.MaxPhaseHistory {
		next.History = next.History[n-inferencev1alpha1.MaxPhaseHistory:]
	}
}

func serviceURL(d *inferencev1alpha1.Deployment) string {
	return "http://" + d.Name + "." + d.Namespace + ".svc:" + strconv.Itoa(int(port(d)))
}

func port(d *inferencev1alpha1.Deployment) int32 {
	if d.Spec.Port != 0 {
		return d.Spec.Port
	}
	return 8000
}

// HealthPath is the path that answers when the server is ready.
func HealthPath(d *inferencev1alpha1.Deployment) string {
	switch {
	case d.Spec.HealthPath != "":
		return d.Spec.HealthPath
	case d.Spec.Engine == inferencev1alpha1.EngineNIM:
		return "/v1/health/ready"
	default:
		return "/health"
	}
}

func labels(d *inferencev1alpha1.Deployment) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      d.Name,
		"app.kubernetes.io/component": "model-server",
		LabelManagedBy:                "infergate",
		LabelDeployment:               d.Name,
	}
}

func selector(d *inferencev1alpha1.Deployment) map[string]string {
	return map[string]string{LabelDeployment: d.Name}
}

// storage is the PersistentVolumeClaim of the model cache; d has spec.storage.
func storage(d *inferencev1alpha1.Deployment) *corev1.PersistentVolumeClaim {
	s := d.Spec.Storage
	mode := s.AccessMode
	if mode == "" {
		mode = corev1.ReadWriteOnce
	}
	return &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: labels(d)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{mode},
			StorageClassName: s.StorageClassName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: s.Size}},
		},
	}
}

// workload is the apps/v1 Deployment that runs the model server.
func workload(d *inferencev1alpha1.Deployment) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: labels(d)},
		Spec: appsv1.DeploymentSpec{
			Replicas:                d.Spec.Replicas,
			Selector:                &metav1.LabelSelector{MatchLabels: selector(d)},
			ProgressDeadlineSeconds: ptr(int32(startupTimeout(d).Seconds()) + 120),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(d)},
				Spec:       podSpec(d),
			},
		},
	}
}

func startupTimeout(d *inferencev1alpha1.Deployment) time.Duration {
	if d.Spec.StartupTimeout != nil {
		return d.Spec.StartupTimeout.Duration
	}
	return defaultStartupTimeout
}

// podSpec is the model server's pod: the image with the served model name passed the way its
// engine expects, GPUs as nvidia.com/gpu limits, probes on the health path.
func podSpec(d *inferencev1alpha1.Deployment) corev1.PodSpec {
	spec := d.Spec
	p := port(d)
	c := corev1.Container{
		Name:      containerName,
		Image:     spec.Image,
		Ports:     []corev1.ContainerPort{{Name: portName, ContainerPort: p, Protocol: corev1.ProtocolTCP}},
		Resources: *spec.Resources.DeepCopy(),
	}
	switch spec.Engine {
	case inferencev1alpha1.EngineNIM:
		c.Env = append(c.Env,
			corev1.EnvVar{Name: "NIM_SERVED_MODEL_NAME", Value: spec.ServedModelName},
			corev1.EnvVar{Name: "NIM_SERVER_PORT", Value: strconv.Itoa(int(p))})
		c.Args = append(c.Args, spec.Args...)
	case inferencev1alpha1.EngineVLLM:
		c.Args = append(append(c.Args, spec.Args...), "--served-model-name", spec.ServedModelName, "--port", strconv.Itoa(int(p)))
	default:
		c.Args = append(c.Args, spec.Args...)
	}
	c.Env = append(c.Env, spec.Env...)
	if spec.GPUs > 0 {
		gpus := *resource.NewQuantity(int64(spec.GPUs), resource.DecimalSI)
		if c.Resources.Limits == nil {
			c.Resources.Limits = corev1.ResourceList{}
		}
		c.Resources.Limits["nvidia.com/gpu"] = gpus
		if c.Resources.Requests != nil {
			c.Resources.Requests["nvidia.com/gpu"] = gpus
		}
	}
	check := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: HealthPath(d), Port: intstr.FromString(portName)}}
	startupPeriod := int32(10)
	c.StartupProbe = &corev1.Probe{ProbeHandler: check, PeriodSeconds: startupPeriod,
		FailureThreshold: max(1, int32(startupTimeout(d).Seconds())/startupPeriod)}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: check, PeriodSeconds: 5, FailureThreshold: 3}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: check, PeriodSeconds: 10, TimeoutSeconds: 5, FailureThreshold: 6}

	pod := corev1.PodSpec{
		Containers:       []corev1.Container{c},
		ImagePullSecrets: spec.ImagePullSecrets,
		NodeSelector:     spec.NodeSelector,
		Tolerations:      spec.Tolerations,
		Affinity:         spec.Affinity,
		RuntimeClassName: spec.RuntimeClassName,
		// Model servers share tensors between processes through /dev/shm.
		Volumes: []corev1.Volume{{Name: "dshm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}},
	}
	pod.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "dshm", MountPath: "/dev/shm"}}
	if s := spec.Storage; s != nil {
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "model-store", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: d.Name}}})
		pod.Containers[0].VolumeMounts = append(pod.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "model-store", MountPath: storagePath(d)})
		if spec.Engine == inferencev1alpha1.EngineNIM {
			pod.Containers[0].Env = append(pod.Containers[0].Env, corev1.EnvVar{Name: "NIM_CACHE_PATH", Value: storagePath(d)})
		}
	}
	return pod
}

// engineMetrics is where an engine serves its Prometheus metrics, so that the gateway reads
// the server's queue and KV cache; nil for a generic server, whose metrics are unknown.
func engineMetrics(e inferencev1alpha1.Engine) *inferencev1alpha1.ProviderMetrics {
	switch e {
	case inferencev1alpha1.EngineVLLM:
		return &inferencev1alpha1.ProviderMetrics{Path: "/metrics"}
	case inferencev1alpha1.EngineNIM:
		return &inferencev1alpha1.ProviderMetrics{Path: "/v1/metrics"}
	}
	return nil
}

func storagePath(d *inferencev1alpha1.Deployment) string {
	switch {
	case d.Spec.Storage.MountPath != "":
		return d.Spec.Storage.MountPath
	case d.Spec.Engine == inferencev1alpha1.EngineNIM:
		return "/opt/nim/.cache"
	case d.Spec.Engine == inferencev1alpha1.EngineVLLM:
		return "/root/.cache/huggingface"
	default:
		return "/models"
	}
}

// service is the model server's Service, of d's name.
func service(d *inferencev1alpha1.Deployment) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: labels(d)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector(d),
			Ports:    []corev1.ServicePort{{Name: portName, Port: port(d), TargetPort: intstr.FromString(portName), Protocol: corev1.ProtocolTCP}},
		},
	}
}

// provider is the Provider of d's server, of d's name, with its controller reference to d.
func (r *DeploymentReconciler) provider(d *inferencev1alpha1.Deployment) (*inferencev1alpha1.Provider, error) {
	p := &inferencev1alpha1.Provider{
		TypeMeta:   metav1.TypeMeta{APIVersion: inferencev1alpha1.GroupVersion.String(), Kind: "Provider"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Labels: map[string]string{LabelManagedBy: "infergate", LabelDeployment: d.Name}},
		Spec: inferencev1alpha1.ProviderSpec{
			Service:      &inferencev1alpha1.ServiceReference{Name: d.Name, Port: port(d)},
			ServedModels: []string{d.Spec.ServedModelName},
			HealthPath:   HealthPath(d),
			Metrics:      engineMetrics(d.Spec.Engine),
		},
	}
	if err := controllerutil.SetControllerReference(d, p, r.Scheme); err != nil {
		return nil, err
	}
	return p, nil
}

// reconcileProvider creates the Provider of the same name for a ready server, and a
// ModelEntity for its served model unless one of that name exists.
func (r *DeploymentReconciler) reconcileProvider(ctx context.Context, d *inferencev1alpha1.Deployment, next *inferencev1alpha1.DeploymentStatus, cond metav1.Condition) (metav1.Condition, error) {
	p, err := r.provider(d)
	if err != nil {
		return cond, err
	}
	if err := applyOwned(ctx, r.Client, d, p); err != nil {
		return cond, err
	}
	next.Provider = d.Name

	name, err := naming.Normalize(d.Spec.ServedModelName)
	if err != nil {
		cond.Message += "; no ModelEntity created: " + err.Error()
		return cond, nil
	}
	next.ModelEntity = name
	var entity inferencev1alpha1.ModelEntity
	err = r.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: name}, &entity)
	if err == nil || !apierrors.IsNotFound(err) {
		return cond, client.IgnoreNotFound(err) // it exists: it may be the user's, never touch it
	}
	entity = inferencev1alpha1.ModelEntity{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace, Labels: map[string]string{LabelManagedBy: "infergate", LabelDeployment: d.Name}},
		Spec: inferencev1alpha1.ModelEntitySpec{
			ServedModelName: d.Spec.ServedModelName,
			Description:     "Created for Deployment " + d.Name,
		},
	}
	if err := controllerutil.SetControllerReference(d, &entity, r.Scheme); err != nil {
		return cond, err
	}
	if err := r.Create(ctx, &entity); err != nil && !apierrors.IsAlreadyExists(err) {
		return cond, fmt.Errorf("create model entity %s: %w", name, err)
	}
	return cond, nil
}

// finalize records the Deleting phase, deletes what the Deployment created and lets it go.
func (r *DeploymentReconciler) finalize(ctx context.Context, d *inferencev1alpha1.Deployment) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(d, finalizer) {
		return ctrl.Result{}, nil
	}
	if d.Status.Phase != inferencev1alpha1.PhaseDeleting {
		before := d.DeepCopy()
		r.setPhase(d, &d.Status, inferencev1alpha1.PhaseDeleting, "deleting the model server, its Provider and its ModelEntity")
		meta.SetStatusCondition(&d.Status.Conditions, readyCondition(metav1.ConditionFalse, inferencev1alpha1.ReasonProgressing, "deleting", d.Generation))
		stale, err := patchStatus(ctx, r.Client, d, before)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("record the Deleting phase: %w", err)
		}
		if stale {
			return ctrl.Result{RequeueAfter: staleRetry}, nil
		}
	}
	owned := []struct {
		obj  client.Object
		name string
	}{
		{&inferencev1alpha1.Provider{}, d.Name},
		{&inferencev1alpha1.ModelEntity{}, d.Status.ModelEntity},
		{&appsv1.Deployment{}, d.Name},
		{&corev1.Service{}, d.Name},
		{&corev1.PersistentVolumeClaim{}, d.Name},
	}
	var errs []error
	for _, o := range owned {
		obj := o.obj
		if o.name == "" {
			continue
		}
		if err := r.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: o.name}, obj); err != nil {
			if !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		if !metav1.IsControlledBy(obj, d) {
			continue // not ours: someone else's object of the name is never touched
		}
		// The UID makes the deletion fail rather than delete an object that replaced ours.
		uid := obj.GetUID()
		if err := r.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	patch := client.MergeFromWithOptions(d.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(d, finalizer)
	if err := r.Patch(ctx, d, patch); apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: staleRetry}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller; the objects it owns bring their owner back, and
// so does the deletion of someone else's object that had the name the Deployment needs.
func (r *DeploymentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&inferencev1alpha1.Deployment{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionStarted()))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.PersistentVolumeClaim{}).
		Owns(&inferencev1alpha1.Provider{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&inferencev1alpha1.ModelEntity{}, builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.PersistentVolumeClaim{}, &inferencev1alpha1.Provider{}} {
		b = b.Watches(obj, handler.EnqueueRequestsFromMapFunc(sameName), builder.WithPredicates(deleted()))
	}
	return b.Named("deployment").Complete(r)
}

// sameName maps an object to the Deployment of its namespace and name, whether there is one or not.
func sameName(_ context.Context, o client.Object) []ctrl.Request {
	return []ctrl.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
}

// deleted passes deletions only.
func deleted() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// deletionStarted passes the update that sets an object's deletion timestamp.
func deletionStarted() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

func ptr[T any](v T) *T { return &v }
