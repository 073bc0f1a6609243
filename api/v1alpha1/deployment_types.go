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

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Engine is the kind of model server a Deployment runs. It decides how the served model name
// is passed to the server and the default health path.
// +kubebuilder:validation:Enum=nim;vllm;generic
type Engine string

const (
	// EngineNIM is an NVIDIA NIM container: the served name goes in NIM_SERVED_MODEL_NAME and
	// readiness is GET /v1/health/ready.
	EngineNIM Engine = "nim"
	// EngineVLLM is a vLLM OpenAI server: the served name goes in --served-model-name and
	// readiness is GET /health.
	EngineVLLM Engine = "vllm"
	// EngineGeneric is any OpenAI-compatible server: the image's own args and env are used as
	// given, and spec.healthPath is required.
	EngineGeneric Engine = "generic"
)

// DeploymentPhase is where a Deployment is in its life.
// +kubebuilder:validation:Enum=Created;Pending;Ready;Failed;Deleting
type DeploymentPhase string

const (
	// PhaseCreated: the model server objects are being created.
	PhaseCreated DeploymentPhase = "Created"
	// PhasePending: the model server is starting (pulling, loading weights, probing).
	PhasePending DeploymentPhase = "Pending"
	// PhaseReady: the model server answers and has a Provider.
	PhaseReady DeploymentPhase = "Ready"
	// PhaseFailed: the model server cannot start; conditions say why.
	PhaseFailed DeploymentPhase = "Failed"
	// PhaseDeleting: the Deployment is being deleted.
	PhaseDeleting DeploymentPhase = "Deleting"
)

// MaxPhaseHistory bounds status.history.
const MaxPhaseHistory = 16

// DeploymentSpec is a self-hosted model server that the operator runs.
// +kubebuilder:validation:XValidation:rule="self.engine != 'generic' || has(self.healthPath)",message="spec.healthPath is required when spec.engine is generic, such as /health"
type DeploymentSpec struct {
	// ServedModelName is the model id the server answers to, such as
	// `meta/llama-3.2-1b-instruct`. It is passed to the server the way its engine expects and
	// becomes the served model of the Provider created for this Deployment.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	ServedModelName string `json:"servedModelName"`

	// Image is the container image of the model server.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +required
	Image string `json:"image"`

	// Engine is the kind of model server: nim, vllm or generic.
	// +required
	Engine Engine `json:"engine"`

	// Replicas is the number of model server pods. Default 1; 0 stops the server.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1024
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Port the server listens on. Default 8000.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=8000
	// +optional
	Port int32 `json:"port,omitempty"`

	// GPUs per pod, requested as the `nvidia.com/gpu` limit. Default 0.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=64
	// +optional
	GPUs int32 `json:"gpus,omitempty"`

	// HealthPath is the HTTP path that answers 200 when the server is ready. Default
	// `/v1/health/ready` for nim and `/health` for vllm; required for generic.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="spec.healthPath must start with /, such as /v1/health/ready"
	// +optional
	HealthPath string `json:"healthPath,omitempty"`

	// StartupTimeout is how long the server may take to become ready (pulling and loading
	// weights) before it is restarted and the Deployment reported Failed. Default 20m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="spec.startupTimeout must be at least 10s"
	// +optional
	StartupTimeout *metav1.Duration `json:"startupTimeout,omitempty"`

	// Env is added to the server container.
	// +kubebuilder:validation:MaxItems=128
	// +listType=map
	// +listMapKey=name
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`

	// Args are passed to the server container. For vllm, --served-model-name and --port follow
	// them, set from servedModelName and port, and win over the same flags in args.
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	// +optional
	Args []string `json:"args,omitempty"`

	// Resources of the server container. GPUs are set with spec.gpus.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// ImagePullSecrets for private registries such as nvcr.io.
	// +listType=map
	// +listMapKey=name
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// NodeSelector constrains the pods to nodes with these labels.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations let the pods run on tainted nodes, such as GPU nodes.
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of the pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// RuntimeClassName of the pods, such as `nvidia`.
	// +optional
	RuntimeClassName *string `json:"runtimeClassName,omitempty"`

	// Storage is a persistent volume for model weights and caches, shared by the pods.
	// +optional
	Storage *DeploymentStorage `json:"storage,omitempty"`
}

// DeploymentStorage is a PersistentVolumeClaim the operator creates for model weights.
type DeploymentStorage struct {
	// Size of the volume, such as `50Gi`.
	// +required
	Size resource.Quantity `json:"size"`

	// StorageClassName of the claim. Default: the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// AccessMode of the claim. Default ReadWriteOnce; use ReadWriteMany when replicas share it
	// across nodes.
	// +kubebuilder:validation:Enum=ReadWriteOnce;ReadWriteMany;ReadWriteOncePod
	// +kubebuilder:default=ReadWriteOnce
	// +optional
	AccessMode corev1.PersistentVolumeAccessMode `json:"accessMode,omitempty"`

	// MountPath in the server container. Default `/opt/nim/.cache` for nim,
	// `/root/.cache/huggingface` for vllm, `/models` for generic.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="spec.storage.mountPath must be an absolute path"
	// +optional
	MountPath string `json:"mountPath,omitempty"`
}

// DeploymentStatus is the observed state of a Deployment.
type DeploymentStatus struct {
	// Phase is Created, Pending, Ready, Failed or Deleting.
	// +optional
	Phase DeploymentPhase `json:"phase,omitempty"`

	// Conditions: `Ready` is True when the model server answers and its Provider exists.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation of the spec that the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// URL of the model server's Service inside the cluster.
	// +optional
	URL string `json:"url,omitempty"`

	// Replicas that are available.
	// +optional
	AvailableReplicas int32 `json:"availableReplicas,omitempty"`

	// Provider is the name of the Provider created for this Deployment.
	// +optional
	Provider string `json:"provider,omitempty"`

	// ModelEntity is the name of the ModelEntity for the served model.
	// +optional
	ModelEntity string `json:"modelEntity,omitempty"`

	// History lists the phase changes, oldest first, at most 16.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	History []PhaseTransition `json:"history,omitempty"`
}

// Deployment is a self-hosted model server: the operator runs it as an apps/v1 Deployment and
// a Service, and when it is ready creates a Provider of the same name.
//
// `kubectl get deployments` lists apps/v1 Deployments; use
// `kubectl get deployments.inference.infergate.dev` or the short name `mdep`.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.availableReplicas
// +kubebuilder:resource:shortName=mdep;modeldeploy,categories=inference
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.servedModelName`
// +kubebuilder:printcolumn:name="Engine",type=string,JSONPath=`.spec.engine`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`,priority=1
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.availableReplicas`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) >= 2 && size(self.metadata.name) <= 63",message="metadata.name must be 2 to 63 characters long"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z][a-z0-9-]*$')",message="metadata.name must start with a lowercase letter and contain only lowercase letters, digits and hyphens"
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.contains('--')",message="metadata.name must not contain consecutive hyphens (--)"
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.endsWith('-')",message="metadata.name must not end with a hyphen"
type Deployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired model server.
	// +required
	Spec DeploymentSpec `json:"spec"`

	// Status is the observed state of the model server.
	// +optional
	Status DeploymentStatus `json:"status,omitempty"`
}

// DeploymentList is a list of Deployments.
//
// +kubebuilder:object:root=true
type DeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Deployment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Deployment{}, &DeploymentList{})
}
