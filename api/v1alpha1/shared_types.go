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

// ConditionReady is the condition type that every kind of this API reports. It is what
// `kubectl wait --for=condition=Ready` waits for.
const ConditionReady = "Ready"

// ConditionMetricsAvailable is a Provider's condition that tells whether the model server's
// metrics (spec.metrics) can be read and are understood. It does not affect readiness.
const ConditionMetricsAvailable = "MetricsAvailable"

// ConditionReason is the machine-readable reason of a condition. Each value names a state a
// person can act on; the condition message says what to do.
type ConditionReason string

const (
	// ReasonReady: the object does what it is for.
	ReasonReady ConditionReason = "Ready"

	// ReasonSecretNotFound: the Secret or the key named by apiKeySecretRef does not exist.
	ReasonSecretNotFound ConditionReason = "SecretNotFound"
	// ReasonServiceNotFound: the Service named by spec.service does not exist or lacks the port.
	ReasonServiceNotFound ConditionReason = "ServiceNotFound"
	// ReasonUnauthorized: the upstream refused the API key (HTTP 401 or 403).
	ReasonUnauthorized ConditionReason = "Unauthorized"
	// ReasonUnreachable: the upstream could not be reached or answered with a server error.
	ReasonUnreachable ConditionReason = "Unreachable"
	// ReasonNotOpenAICompatible: the upstream answered, but not with an OpenAI model list.
	ReasonNotOpenAICompatible ConditionReason = "NotOpenAICompatible"
	// ReasonAddressNotAllowed: the upstream's address is one the egress rules refuse
	// (loopback, link-local, unspecified, a cloud metadata address, or a range of
	// --egress-deny); the message names the range and the flag that lifts it.
	ReasonAddressNotAllowed ConditionReason = "AddressNotAllowed"
	// ReasonRedirected: the upstream answered with a redirect, which is never followed: a key
	// must not travel to another address.
	ReasonRedirected ConditionReason = "Redirected"
	// ReasonLoop: the upstream leads back to an infergate gateway (508 Loop Detected).
	ReasonLoop ConditionReason = "Loop"

	// ReasonInvalidTimeZone: an InferenceBudget's spec.timeZone is not a known IANA time zone;
	// its day and month windows follow UTC until it is fixed.
	ReasonInvalidTimeZone ConditionReason = "InvalidTimeZone"
	// ReasonStoreUnavailable: the budget store cannot be reached; the budget's failureMode
	// decides what the gateway does meanwhile.
	ReasonStoreUnavailable ConditionReason = "StoreUnavailable"

	// ReasonNoReadyProvider: no provider that serves the model is Ready.
	ReasonNoReadyProvider ConditionReason = "NoReadyProvider"
	// ReasonProviderNotFound: a provider named in spec.providers does not exist.
	ReasonProviderNotFound ConditionReason = "ProviderNotFound"
	// ReasonRefNotPermitted: a provider in another namespace is referenced without a
	// ReferenceGrant in that namespace that allows it.
	ReasonRefNotPermitted ConditionReason = "RefNotPermitted"
	// ReasonNoReadyTarget: no target of a virtual model can serve it.
	ReasonNoReadyTarget ConditionReason = "NoReadyTarget"
	// ReasonTargetCycle: spec.targets leads back to the entity through other virtual models.
	ReasonTargetCycle ConditionReason = "TargetCycle"

	// ReasonProgressing: the model server is starting.
	ReasonProgressing ConditionReason = "Progressing"
	// ReasonFailed: the model server cannot start; the message says why.
	ReasonFailed ConditionReason = "Failed"
	// ReasonScaledToZero: the Deployment has zero replicas on purpose.
	ReasonScaledToZero ConditionReason = "ScaledToZero"

	// ReasonMetricsRead: the model server's metrics were read; the message names the metrics.
	ReasonMetricsRead ConditionReason = "MetricsRead"
	// ReasonScrapeFailed: the metrics could not be fetched; the message says why.
	ReasonScrapeFailed ConditionReason = "ScrapeFailed"
	// ReasonUnknownMetrics: the metrics were fetched but hold none of the queue metrics of a
	// known engine (vLLM, NIM, SGLang, TGI).
	ReasonUnknownMetrics ConditionReason = "UnknownMetrics"
)

// SecretKeyReference names one key of a Secret in the same namespace as the object that holds
// the reference.
type SecretKeyReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key within the Secret's data whose value is the API key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +required
	Key string `json:"key"`
}

// HTTPHeader is one HTTP header to set on requests sent upstream.
type HTTPHeader struct {
	// Name of the header, an HTTP token such as `X-Team`. Matched case-insensitively. Names
	// the gateway sets itself are refused.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$`
	// +kubebuilder:validation:XValidation:rule="!self.lowerAscii().startsWith('x-infergate-') && !(self.lowerAscii() in ['x-request-id', 'traceparent', 'tracestate', 'accept-encoding'])",message="X-Infergate-* headers (among them the hop header that detects loops), X-Request-Id, traceparent, tracestate and Accept-Encoding are set by the gateway itself; choose another header name"
	// +required
	Name string `json:"name"`

	// Value of the header.
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^[^\r\n]*$`
	// +optional
	Value string `json:"value,omitempty"`
}

// PhaseTransition records when an object entered a phase.
type PhaseTransition struct {
	// Phase entered.
	// +required
	Phase DeploymentPhase `json:"phase"`
	// Time of the transition.
	// +required
	Time metav1.Time `json:"time"`
	// Message explains the transition.
	// +optional
	Message string `json:"message,omitempty"`
}

// Priority is the class of a model's requests when its providers are saturated.
// +kubebuilder:validation:Enum=Critical;Standard;Sheddable
type Priority string

const (
	// PriorityCritical requests are dispatched before every other class and never wait
	// behind a lower one.
	PriorityCritical Priority = "Critical"
	// PriorityStandard is the default.
	PriorityStandard Priority = "Standard"
	// PrioritySheddable requests go last, leave an eighth of the pool's capacity to the other
	// classes, and are refused first.
	PrioritySheddable Priority = "Sheddable"
)

// QueuePolicy bounds how a gateway replica holds requests while every provider of their model
// is saturated (see the README's "Fair share and priority").
type QueuePolicy struct {
	// MaxTime is how long a request may wait for capacity before it is answered 429 with
	// Retry-After. Default 5s; 0 refuses at once.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('10m')",message="maxTime must be at most 10m"
	// +optional
	MaxTime *metav1.Duration `json:"maxTime,omitempty"`

	// MaxLength is how many requests a gateway replica holds for the pool of providers at
	// most; past it, a request sheds a waiting one of a lower class or is answered 429.
	// Default 1024; 0 refuses at once.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxLength *int32 `json:"maxLength,omitempty"`
}
