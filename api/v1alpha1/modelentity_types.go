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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelEntitySpec is a model that clients can name.
type ModelEntitySpec struct {
	// ServedModelName is the model id the upstream knows, such as `meta/llama-3.2-1b-instruct`.
	// Requests name the entity (`<namespace>/<name>`); the gateway sends this id upstream and
	// rewrites it back in responses. Required unless spec.targets names the entities that
	// serve this one.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	ServedModelName string `json:"servedModelName,omitempty"`

	// Providers lists the providers that serve this model. When it is empty, every Ready provider
	// in this namespace or in the system workspace whose served models include servedModelName
	// is used.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(p, self.exists_one(q, q.name == p.name && (has(q.__namespace__) ? q.__namespace__ : '') == (has(p.__namespace__) ? p.__namespace__ : '')))",message="spec.providers must not name the same provider twice"
	// +listType=atomic
	// +optional
	Providers []ProviderReference `json:"providers,omitempty"`

	// Description is free text for people.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// RetryOn lists further failures after which the gateway tries another provider. Failures
	// where the request provably never ran upstream (no connection could be made, the
	// connection failed while the request was sent, or an answer of 429 or 503) are always
	// retried. Each of these may mean the first provider already ran,
	// and billed, the request: GatewayError, a 502 or 504 answer; Timeout, no response headers
	// within the provider's responseHeader timeout; Reset, the connection lost after the request
	// was sent. Retries happen only before the first byte reaches the client. Default: none.
	// +kubebuilder:validation:MaxItems=3
	// +listType=set
	// +optional
	RetryOn []RetryCondition `json:"retryOn,omitempty"`

	// LoadBalancing is how requests are spread over the providers; each gateway replica
	// applies it alone. CacheAware (the default): requests whose prompts share a prefix (the
	// system prompt and the conversation's first message) go to one provider, so that its
	// prefix cache hits, unless it is overloaded; the others go to the less loaded of two
	// providers drawn by weight, judged by the model servers' own queues where spec.metrics
	// of their Providers is set, else by this replica's requests in flight and recent
	// latencies. LeastRequest: the less busy of two providers drawn by weight, by this
	// replica's requests in flight. RoundRobin: each provider in turn, as often as its weight
	// says. Failover: the first provider (in spec.providers order, else by namespace and name)
	// that is not ejected, the others only when it fails. Ejections, retries and Retry-After
	// hold under every policy.
	// +kubebuilder:default=CacheAware
	// +optional
	LoadBalancing LoadBalancing `json:"loadBalancing,omitempty"`

	// Paths are the paths, after `/-/`, that the model's routes (the OpenAI route and
	// `/model/{name}/-/`) accept for it, with POST. Default: `v1/chat/completions`,
	// `v1/completions`, `v1/embeddings` and `v1/responses`. Other paths are answered 404 and
	// other methods 405 there: a right to call this model is not a right to reach the rest of
	// its providers with their keys (files, batches, fine-tuning, stored responses). Add a
	// model server's own inference paths here, such as `v1/ranking` for a NIM reranker; the
	// provider route, which needs `providers/proxy`, reaches any path.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.all(p, p.matches('^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$'))",message="spec.paths are paths after /-/ such as v1/chat/completions: no leading or trailing slash, segments of letters, digits, '-' and '_'"
	// +listType=set
	// +optional
	Paths []string `json:"paths,omitempty"`

	// Priority is the class of this model's requests when every provider of it is saturated:
	// the gateway then holds requests in its own queue and dispatches them as capacity frees,
	// Critical before Standard before Sheddable, and within a class by fair share over
	// workspaces. A caller allowed the verb `prioritize` on `modelentities/proxy` of this model
	// may raise its request's class with the X-Infergate-Priority header; any caller may lower
	// it. Default Standard.
	// +kubebuilder:default=Standard
	// +optional
	Priority Priority `json:"priority,omitempty"`

	// Queue bounds the wait for capacity of this model's requests. Fields left unset take the
	// smallest value its providers' spec.queue sets, else the defaults (5s, 1024).
	// +optional
	Queue *QueuePolicy `json:"queue,omitempty"`

	// Targets make this entity a virtual model: clients name it, and the entities it targets
	// serve it. Each request goes to a target of the lowest order, drawn by weight among them;
	// before the first byte reaches the client, it falls back to the others of that order, then
	// to those of the next order, when a target has no routable provider, when all of them are
	// saturated, when an attempt fails in a way that is retried (429, 503, a connection that
	// failed, what spec.retryOn allows), when the provider answers that the prompt exceeds the
	// model's context, or when a stream's first token does not come within the target's
	// timeToFirstToken. Every response names this entity as its model. Callers need the right
	// to call this entity only, not its targets. A target is an entity of this namespace, of
	// the system workspace, or of another namespace whose ReferenceGrant lets ModelEntities of
	// this one refer to ModelEntities there; it must have providers of its own, not targets.
	// A target naming this entity itself stands for its own providers (spec.servedModelName
	// and spec.providers), which are otherwise not used once targets are set.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(u, u.name == t.name && (has(u.__namespace__) ? u.__namespace__ : '') == (has(t.__namespace__) ? t.__namespace__ : '')))",message="spec.targets must not name the same model entity twice"
	// +listType=atomic
	// +optional
	Targets []ModelTarget `json:"targets,omitempty"`

	// TargetAffinity keeps related requests on one target of a weighted split while it can
	// serve them: Caller, the requests of one caller (its user name when the gateway
	// authenticates, else its address); Conversation, the requests whose prompts begin alike
	// (the prefix CacheAware keys on), so that a conversation stays with one model. None (the
	// default) draws each request by weight. Fallbacks happen either way.
	// +kubebuilder:default=None
	// +optional
	TargetAffinity TargetAffinity `json:"targetAffinity,omitempty"`
}

// ModelTarget is an entity that serves a virtual model.
type ModelTarget struct {
	// Name of the ModelEntity.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9-]*$`
	// +required
	Name string `json:"name"`

	// Namespace of the ModelEntity. Default: this entity's namespace. Another namespace is
	// allowed when it is the system workspace, or when a ReferenceGrant there permits it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Weight is the share of requests this target receives relative to the other targets of
	// its order. Default 1.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=1
	// +optional
	Weight *int32 `json:"weight,omitempty"`

	// Order ranks the fallbacks: requests go to targets of the lowest order, and to those of
	// the next one only when none of those could serve them. Default 0.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=15
	// +optional
	Order int32 `json:"order,omitempty"`

	// ServedModelName, when set, is the model id sent to the target's providers instead of
	// the target's own.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	ServedModelName string `json:"servedModelName,omitempty"`

	// TimeToFirstToken bounds, for a stream, the wait from sending the request to the target
	// until the first bytes of its stream: past it, the attempt is abandoned and the request
	// falls back to the next target. It does not apply to the last target a request may try,
	// and replaces the provider's streamIdle timeout for that first wait. 100ms to 10m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('10m')",message="timeToFirstToken must be at least 100ms and at most 10m"
	// +optional
	TimeToFirstToken *metav1.Duration `json:"timeToFirstToken,omitempty"`
}

// TargetAffinity keeps related requests on one target of a split.
// +kubebuilder:validation:Enum=None;Caller;Conversation
type TargetAffinity string

const (
	// TargetAffinityNone draws each request by weight.
	TargetAffinityNone TargetAffinity = "None"
	// TargetAffinityCaller keeps the requests of a caller on one target.
	TargetAffinityCaller TargetAffinity = "Caller"
	// TargetAffinityConversation keeps requests whose prompts begin alike on one target.
	TargetAffinityConversation TargetAffinity = "Conversation"
)

// ResolvedTarget is a target the controller found for a virtual model.
type ResolvedTarget struct {
	// Namespace of the ModelEntity.
	Namespace string `json:"namespace"`
	// Name of the ModelEntity.
	Name string `json:"name"`
	// Weight and Order of the target.
	Weight int32 `json:"weight"`
	Order  int32 `json:"order"`
	// Ready tells whether the target may serve requests: it is permitted, has providers of
	// its own, and one of them is Ready.
	Ready bool `json:"ready"`
	// Message says why a target is not ready.
	// +optional
	Message string `json:"message,omitempty"`
}

// LoadBalancing is a policy that spreads a model's requests over its providers.
// +kubebuilder:validation:Enum=CacheAware;LeastRequest;RoundRobin;Failover
type LoadBalancing string

const (
	// LoadBalancingCacheAware keeps a prompt prefix on one provider and weighs load.
	LoadBalancingCacheAware LoadBalancing = "CacheAware"
	// LoadBalancingLeastRequest picks the less busy of two providers.
	LoadBalancingLeastRequest LoadBalancing = "LeastRequest"
	// LoadBalancingRoundRobin takes the providers in turn.
	LoadBalancingRoundRobin LoadBalancing = "RoundRobin"
	// LoadBalancingFailover takes the first provider that is not ejected.
	LoadBalancingFailover LoadBalancing = "Failover"
)

// RetryCondition is a failure after which a request that may have run upstream is retried on
// another provider.
// +kubebuilder:validation:Enum=GatewayError;Timeout;Reset
type RetryCondition string

const (
	// RetryOnGatewayError retries after a 502 or 504 answer.
	RetryOnGatewayError RetryCondition = "GatewayError"
	// RetryOnTimeout retries when no response headers came within the responseHeader timeout.
	RetryOnTimeout RetryCondition = "Timeout"
	// RetryOnReset retries when the connection was lost after the request was sent.
	RetryOnReset RetryCondition = "Reset"
)

// ProviderReference names a Provider that serves a ModelEntity.
type ProviderReference struct {
	// Name of the Provider.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9-]*$`
	// +required
	Name string `json:"name"`

	// Namespace of the Provider. Default: the ModelEntity's namespace. Another namespace is
	// allowed when it is the system workspace, or when a ReferenceGrant there permits it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// ServedModelName overrides spec.servedModelName for this provider, for upstreams that know
	// the model under another id.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +optional
	ServedModelName string `json:"servedModelName,omitempty"`

	// Weight is the share of requests this provider receives relative to the others. Default 1.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=1
	// +optional
	Weight *int32 `json:"weight,omitempty"`
}

// ResolvedProvider is a provider the controller found for a ModelEntity.
type ResolvedProvider struct {
	// Namespace of the Provider.
	Namespace string `json:"namespace"`
	// Name of the Provider.
	Name string `json:"name"`
	// ServedModelName is the id sent to this provider.
	ServedModelName string `json:"servedModelName"`
	// Weight of the provider.
	Weight int32 `json:"weight"`
	// Ready tells whether the provider is Ready and serves the model.
	Ready bool `json:"ready"`
}

// ModelEntityStatus is the observed state of a ModelEntity.
type ModelEntityStatus struct {
	// Conditions: `Ready` is True when at least one provider that serves the model is Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation of the spec that the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// ID is the OpenAI model id clients send as `model`: `<namespace>/<name>`.
	// +optional
	ID string `json:"id,omitempty"`

	// Providers are the providers resolved for this model.
	// +listType=atomic
	// +optional
	Providers []ResolvedProvider `json:"providers,omitempty"`

	// ReadyProviders is the number of resolved providers that are Ready.
	// +optional
	ReadyProviders int32 `json:"readyProviders"`

	// Targets are the targets of a virtual model, with their readiness.
	// +listType=atomic
	// +optional
	Targets []ResolvedTarget `json:"targets,omitempty"`

	// TargetSummary shows the targets in one line: each with its share of its order, those
	// that are not ready marked, the fallbacks after "then".
	// +optional
	TargetSummary string `json:"targetSummary,omitempty"`
}

// ModelEntity is a model that clients can name, routable when a Ready provider serves it.
//
// The name is the model id's second half (`<namespace>/<name>`) and follows the entity rule:
// lowercase letters, digits and hyphens, 2 to 63 characters, starting with a letter, no `--`,
// not ending with `-`.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=me,categories=inference
// +kubebuilder:printcolumn:name="Served Model",type=string,JSONPath=`.spec.servedModelName`
// +kubebuilder:printcolumn:name="ID",type=string,JSONPath=`.status.id`,priority=1
// +kubebuilder:printcolumn:name="Ready Providers",type=integer,JSONPath=`.status.readyProviders`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Targets",type=string,JSONPath=`.status.targetSummary`
// +kubebuilder:printcolumn:name="Balancing",type=string,JSONPath=`.spec.loadBalancing`,priority=1
// +kubebuilder:printcolumn:name="Priority",type=string,JSONPath=`.spec.priority`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) >= 2 && size(self.metadata.name) <= 63",message="metadata.name must be 2 to 63 characters long"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z][a-z0-9-]*$')",message="metadata.name must start with a lowercase letter and contain only lowercase letters, digits and hyphens; register vendor ids such as meta/llama-3.3-70b-instruct as meta-llama-3-3-70b-instruct"
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.contains('--')",message="metadata.name must not contain consecutive hyphens (--)"
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.endsWith('-')",message="metadata.name must not end with a hyphen"
// +kubebuilder:validation:XValidation:rule="has(self.spec.servedModelName) || (has(self.spec.targets) && size(self.spec.targets) > 0)",message="spec.servedModelName is required unless spec.targets names the model entities that serve this one"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.providers) || size(self.spec.providers) == 0 || has(self.spec.servedModelName)",message="spec.providers needs spec.servedModelName"
// +kubebuilder:validation:XValidation:rule="has(self.spec.servedModelName) || !has(self.spec.targets) || !self.spec.targets.exists(t, t.name == self.metadata.name && !has(t.__namespace__))",message="spec.targets names this model entity itself, which stands for its own providers, but it has no spec.servedModelName: the entity would target itself in a cycle"
type ModelEntity struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired model.
	// +required
	Spec ModelEntitySpec `json:"spec"`

	// Status is the observed state of the model.
	// +optional
	Status ModelEntityStatus `json:"status,omitempty"`
}

// ModelEntityList is a list of ModelEntities.
//
// +kubebuilder:object:root=true
type ModelEntityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelEntity `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelEntity{}, &ModelEntityList{})
}
