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
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderSpec describes one upstream inference endpoint: an external API such as NVIDIA Build
// or OpenAI, or a model server in the cluster.
//
// +kubebuilder:validation:XValidation:rule="has(self.url) != has(self.service)",message="set exactly one of spec.url (an external endpoint) or spec.service (a Service in this namespace)"
// +kubebuilder:validation:XValidation:rule="!has(self.enabledModels) || !has(self.servedModels)",message="spec.enabledModels filters discovered models; it cannot be combined with the static spec.servedModels list"
type ProviderSpec struct {
	// URL is the base URL of an external upstream, http or https, such as
	// `https://integrate.api.nvidia.com` or `https://api.openai.com/v1`. Request paths are appended
	// to it; a duplicate `v1/` is dropped when the URL already ends in `/v1`.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="spec.url must be an absolute http:// or https:// URL with a host, such as https://integrate.api.nvidia.com"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#')",message="spec.url must not carry a query string or fragment"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z]+://[^/]*@')",message="spec.url must not carry credentials: put the API key in a Secret and reference it with spec.apiKeySecretRef"
	// +optional
	URL string `json:"url,omitempty"`

	// Service is an in-cluster upstream: a Service in the same namespace.
	// +optional
	Service *ServiceReference `json:"service,omitempty"`

	// APIKeySecretRef names the Secret key that holds the API key sent upstream. Keys are only
	// read from Secrets; they are never logged, echoed or written to status. Whitespace around
	// the key, such as the trailing newline of a file, is trimmed.
	// +optional
	APIKeySecretRef *SecretKeyReference `json:"apiKeySecretRef,omitempty"`

	// AuthHeader says how the API key is sent. Default: `Authorization: Bearer <key>`.
	// +optional
	AuthHeader *AuthHeader `json:"authHeader,omitempty"`

	// DefaultExtraHeaders are added to upstream requests that do not carry them already.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:XValidation:rule="self.all(h, !(h.name.lowerAscii() in ['authorization', 'cookie']))",message="Authorization and Cookie cannot be extra headers: put the API key in a Secret and reference it with spec.apiKeySecretRef"
	// +kubebuilder:validation:XValidation:rule="self.all(h, !(h.name.lowerAscii() in ['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection']))",message="Host, Content-Length and hop-by-hop headers are set by the gateway and cannot be extra headers"
	// +kubebuilder:validation:XValidation:rule="self.all(h, self.exists_one(o, o.name.lowerAscii() == h.name.lowerAscii()))",message="header names must be unique, ignoring case"
	// +optional
	DefaultExtraHeaders []HTTPHeader `json:"defaultExtraHeaders,omitempty"`

	// RequiredExtraHeaders are set on every upstream request, replacing any the client sent.
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:XValidation:rule="self.all(h, !(h.name.lowerAscii() in ['authorization', 'cookie']))",message="Authorization and Cookie cannot be extra headers: put the API key in a Secret and reference it with spec.apiKeySecretRef"
	// +kubebuilder:validation:XValidation:rule="self.all(h, !(h.name.lowerAscii() in ['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection']))",message="Host, Content-Length and hop-by-hop headers are set by the gateway and cannot be extra headers"
	// +kubebuilder:validation:XValidation:rule="self.all(h, self.exists_one(o, o.name.lowerAscii() == h.name.lowerAscii()))",message="header names must be unique, ignoring case"
	// +optional
	RequiredExtraHeaders []HTTPHeader `json:"requiredExtraHeaders,omitempty"`

	// DefaultExtraBody holds top-level JSON fields added to request bodies that lack them, such
	// as `{name: max_tokens, value: 1024}`.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:XValidation:rule="self.all(f, f.name.lowerAscii() != 'model')",message="the model field is set by the gateway and cannot be an extra body field, in any letter case"
	// +optional
	DefaultExtraBody []BodyField `json:"defaultExtraBody,omitempty"`

	// RequiredExtraBody holds top-level JSON fields set on every request body, replacing what
	// the client sent.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:XValidation:rule="self.all(f, f.name.lowerAscii() != 'model')",message="the model field is set by the gateway and cannot be an extra body field, in any letter case"
	// +optional
	RequiredExtraBody []BodyField `json:"requiredExtraBody,omitempty"`

	// ServedModels is a static list of the model ids the upstream serves. When it is empty, the
	// controller discovers them with `GET <url>/v1/models`.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=set
	// +optional
	ServedModels []string `json:"servedModels,omitempty"`

	// EnabledModels is an allow-list applied to discovered model ids. Empty allows all.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=set
	// +optional
	EnabledModels []string `json:"enabledModels,omitempty"`

	// HealthPath, when set, is probed with GET instead of `/v1/models` to decide readiness; use
	// it together with servedModels for upstreams that do not list models.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="spec.healthPath must start with /, such as /v1/health/ready"
	// +optional
	HealthPath string `json:"healthPath,omitempty"`

	// ProbeInterval is how often the upstream is probed. Default 30s.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="spec.probeInterval must be at least 1s"
	// +optional
	ProbeInterval *metav1.Duration `json:"probeInterval,omitempty"`

	// Timeouts bound each upstream request.
	// +optional
	Timeouts *ProviderTimeouts `json:"timeouts,omitempty"`

	// Metrics, when set, is where the model server serves its Prometheus metrics. Every gateway
	// replica reads them on an interval, off the request path, to see the server's queue and KV
	// cache use and route around a busy server; vLLM, NIM, SGLang and TGI metric names are
	// understood. Set `metrics: {}` for a vLLM server's /metrics. Providers created for a
	// Deployment of engine vllm or nim have it set.
	// +optional
	Metrics *ProviderMetrics `json:"metrics,omitempty"`

	// Queue bounds how long requests of models this provider serves may wait for capacity
	// when every provider of the model is saturated, and how many wait; a ModelEntity's own
	// spec.queue wins. A provider is saturated when its model server's metrics (spec.metrics)
	// show no free slot or a full KV cache; without metrics the gateway does not queue for it.
	// +optional
	Queue *QueuePolicy `json:"queue,omitempty"`
}

// ProviderMetrics says where and how often a model server's metrics are read.
type ProviderMetrics struct {
	// Path of the metrics on the provider's host: /metrics for vLLM, SGLang and TGI,
	// /v1/metrics for NIM. Default /metrics.
	// +kubebuilder:default="/metrics"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="spec.metrics.path must start with /, such as /metrics"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#')",message="spec.metrics.path must not carry a query string or fragment"
	// +optional
	Path string `json:"path,omitempty"`

	// Port serving the metrics, when it is not the provider's own.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port *int32 `json:"port,omitempty"`

	// Interval between two reads by each gateway replica, from 100ms to 1m. Default 200ms:
	// replicas see each other's requests only through these reads, and a model server's
	// queue changes several times a second. A read older than three intervals is ignored.
	// +kubebuilder:default="200ms"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('1m')",message="spec.metrics.interval must be from 100ms to 1m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
}

// BodyField is one top-level field of a JSON request body.
type BodyField struct {
	// Name of the field, such as `max_tokens`.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	Name string `json:"name"`

	// Value of the field: any JSON value.
	// +kubebuilder:validation:XPreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +required
	Value apiextensionsv1.JSON `json:"value"`
}

// ServiceReference names a port of a Service in the provider's namespace.
type ServiceReference struct {
	// Name of the Service.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// Port of the Service.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +required
	Port int32 `json:"port"`

	// Scheme to speak to the Service. Default http.
	// +kubebuilder:validation:Enum=http;https
	// +kubebuilder:default=http
	// +optional
	Scheme string `json:"scheme,omitempty"`

	// Path is a base path prepended to request paths, such as `/v1`. Default none.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="spec.service.path must start with /"
	// +optional
	Path string `json:"path,omitempty"`
}

// AuthHeader says how the API key reaches the upstream.
type AuthHeader struct {
	// Name of the header, such as `Authorization` or `X-Api-Key`. Names the gateway sets
	// itself are refused.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$`
	// +kubebuilder:validation:XValidation:rule="self.lowerAscii() != 'cookie'",message="spec.authHeader.name cannot be Cookie"
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection'])",message="Host, Content-Length and hop-by-hop headers are set by the gateway and cannot carry the key"
	// +kubebuilder:validation:XValidation:rule="!self.lowerAscii().startsWith('x-infergate-') && !(self.lowerAscii() in ['x-request-id', 'traceparent', 'tracestate', 'accept-encoding'])",message="X-Infergate-* headers (among them the hop header that detects loops), X-Request-Id, traceparent, tracestate and Accept-Encoding are set by the gateway itself; choose another header name"
	// +required
	Name string `json:"name"`

	// Prefix is written before the key, such as `Bearer ` (with its space). Empty sends the key
	// alone, as `X-Api-Key` expects.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[^\r\n]*$`
	// +optional
	Prefix string `json:"prefix,omitempty"`
}

// ProviderTimeouts bound the phases of an upstream request. A streaming response is bounded by
// the idle timeout between chunks, never by a total duration.
type ProviderTimeouts struct {
	// Connect bounds establishing the TCP and TLS connection. Default 5s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeouts must be positive durations such as 5s"
	// +optional
	Connect *metav1.Duration `json:"connect,omitempty"`

	// ResponseHeader bounds the wait for the upstream's response headers after the request was
	// sent; for a large model this includes the time to the first token. Default 300s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeouts must be positive durations such as 5s"
	// +optional
	ResponseHeader *metav1.Duration `json:"responseHeader,omitempty"`

	// StreamIdle bounds the silence between two chunks of a response body. Default 120s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeouts must be positive durations such as 5s"
	// +optional
	StreamIdle *metav1.Duration `json:"streamIdle,omitempty"`
}

// ProviderStatus is the observed state of a Provider.
type ProviderStatus struct {
	// Conditions: `Ready` tells whether the gateway may route to this provider, with a reason
	// such as SecretNotFound, Unauthorized, Unreachable or NotOpenAICompatible.
	// `MetricsAvailable`, when spec.metrics is set, tells whether the model server's metrics
	// are read (MetricsRead) or not (ScrapeFailed, UnknownMetrics).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation of the spec that the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// URL is the resolved base URL requests are sent to.
	// +optional
	URL string `json:"url,omitempty"`

	// Models are the model ids the upstream serves, after the allow-list.
	// +listType=set
	// +optional
	Models []string `json:"models,omitempty"`

	// LastProbeTime is when the upstream was last probed.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
}

// Provider is one upstream inference endpoint that the gateway can route to.
//
// Its name follows the same rule as a ModelEntity's, since it appears in gateway paths
// (`/provider/{name}/-/...`).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=prov,categories=inference
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Models",type=string,JSONPath=`.status.models`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Metrics",type=string,JSONPath=`.status.conditions[?(@.type=="MetricsAvailable")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) >= 2 && size(self.metadata.name) <= 63",message="metadata.name must be 2 to 63 characters long"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z][a-z0-9-]*$')",message="metadata.name must start with a lowercase letter and contain only lowercase letters, digits and hyphens"
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.contains('--')",message="metadata.name must not contain consecutive hyphens (--)"
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.endsWith('-')",message="metadata.name must not end with a hyphen"
type Provider struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired upstream.
	// +required
	Spec ProviderSpec `json:"spec"`

	// Status is the observed state of the upstream.
	// +optional
	Status ProviderStatus `json:"status,omitempty"`
}

// ProviderList is a list of Providers.
//
// +kubebuilder:object:root=true
type ProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Provider `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Provider{}, &ProviderList{})
}
