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

// InferenceBudgetSpec limits what the gateway admits for a workspace: requests and tokens per
// window, counted for the whole workspace or for each caller, on every gateway replica at once.
// +kubebuilder:validation:XValidation:rule="!has(self.providers) || !has(self.modelEntities)",message="spec.modelEntities and spec.providers cannot both be set: make one budget for each"
type InferenceBudgetSpec struct {
	// Per says whose requests share a counter. Workspace (the default): all requests of the
	// workspace together. Caller: each authenticated user or ServiceAccount has counters of
	// its own, each held to the limits. A budget in the system workspace applies to the requests
	// of every workspace, with counters for each workspace (or each caller of each workspace).
	// +kubebuilder:default=Workspace
	// +optional
	Per BudgetScope `json:"per,omitempty"`

	// Subjects, when set, narrow the budget to the requests of these users, groups and
	// ServiceAccounts (as the gateway authenticated them); other callers are not counted.
	// Default: every caller.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Subjects []BudgetSubject `json:"subjects,omitempty"`

	// ModelEntities, when set, narrow the budget to requests for these model entities (names
	// in the request's workspace), on the OpenAI and model routes.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	ModelEntities []string `json:"modelEntities,omitempty"`

	// Providers, when set, narrow the budget to requests that may reach these providers: their
	// provider route, and model requests whose model entity routes to at least one of them
	// (counted whichever provider serves them, so that the limit always holds).
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Providers []BudgetProviderReference `json:"providers,omitempty"`

	// Limits are the most the budget admits in each window; every limit set must allow a
	// request. A request refused by any budget that matches it gets 429.
	// +required
	Limits BudgetLimits `json:"limits"`

	// Tokens says which tokens the token limits count: Total (the default), Input (prompt
	// tokens, cached ones included as the provider reports them) or Output (completion tokens).
	// +kubebuilder:default=Total
	// +optional
	Tokens TokenCount `json:"tokens,omitempty"`

	// TimeZone is the IANA time zone, such as Europe/Berlin, whose calendar days and months
	// the day and month budgets follow. Default UTC.
	// +kubebuilder:default=UTC
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`
	// +optional
	TimeZone string `json:"timeZone,omitempty"`

	// FailureMode decides what happens while the budget store cannot be reached. Closed (the
	// default): matching requests get 503 with code budget_unavailable. Open: each gateway
	// replica enforces the limits divided by the number of replicas on its own until the
	// store is back. Never unlimited.
	// +kubebuilder:default=Closed
	// +optional
	FailureMode FailureMode `json:"failureMode,omitempty"`
}

// BudgetScope says whose requests share a budget's counters.
// +kubebuilder:validation:Enum=Workspace;Caller
type BudgetScope string

const (
	// BudgetPerWorkspace counts all requests of a workspace together.
	BudgetPerWorkspace BudgetScope = "Workspace"
	// BudgetPerCaller counts each caller's requests apart.
	BudgetPerCaller BudgetScope = "Caller"
)

// TokenCount says which tokens a token limit counts.
// +kubebuilder:validation:Enum=Total;Input;Output
type TokenCount string

const (
	// TokensTotal counts input and output tokens.
	TokensTotal TokenCount = "Total"
	// TokensInput counts input (prompt) tokens.
	TokensInput TokenCount = "Input"
	// TokensOutput counts output (completion) tokens.
	TokensOutput TokenCount = "Output"
)

// FailureMode is what a budget does while its store cannot be reached.
// +kubebuilder:validation:Enum=Closed;Open
type FailureMode string

const (
	// FailClosed refuses the requests the budget matches with 503.
	FailClosed FailureMode = "Closed"
	// FailOpen enforces the limits divided by the replicas on each replica alone.
	FailOpen FailureMode = "Open"
)

// BudgetProviderReference names a Provider a budget is about.
type BudgetProviderReference struct {
	// Name of the Provider.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9-]*$`
	// +required
	Name string `json:"name"`
	// Namespace of the Provider, such as the system workspace. Default: the budget's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// BudgetSubject is a user, group or ServiceAccount, as in an RBAC RoleBinding.
// +kubebuilder:validation:XValidation:rule="self.kind == 'ServiceAccount' || !has(self.__namespace__)",message="namespace is only for subjects of kind ServiceAccount"
type BudgetSubject struct {
	// Kind is User, Group or ServiceAccount.
	// +required
	Kind SubjectKind `json:"kind"`
	// Name of the user, group or ServiceAccount.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// Namespace of a ServiceAccount. Default: the budget's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// SubjectKind is the kind of a BudgetSubject.
// +kubebuilder:validation:Enum=User;Group;ServiceAccount
type SubjectKind string

const (
	// SubjectUser is a user name as authentication gives it.
	SubjectUser SubjectKind = "User"
	// SubjectGroup is a group as authentication gives it.
	SubjectGroup SubjectKind = "Group"
	// SubjectServiceAccount is a ServiceAccount.
	SubjectServiceAccount SubjectKind = "ServiceAccount"
)

// BudgetLimits are the most a budget admits per window. Seconds and minutes are fixed windows
// of the store's clock; days and months are calendar windows in spec.timeZone. 0 admits
// nothing.
// +kubebuilder:validation:XValidation:rule="has(self.requestsPerSecond) || has(self.requestsPerMinute) || has(self.tokensPerMinute) || has(self.tokensPerDay) || has(self.tokensPerMonth)",message="spec.limits must set at least one of requestsPerSecond, requestsPerMinute, tokensPerMinute, tokensPerDay and tokensPerMonth"
type BudgetLimits struct {
	// RequestsPerSecond is the most requests admitted in one second.
	// +kubebuilder:validation:Minimum=0
	// +optional
	RequestsPerSecond *int64 `json:"requestsPerSecond,omitempty"`
	// RequestsPerMinute is the most requests admitted in one minute.
	// +kubebuilder:validation:Minimum=0
	// +optional
	RequestsPerMinute *int64 `json:"requestsPerMinute,omitempty"`
	// TokensPerMinute is the most tokens admitted in one minute.
	// +kubebuilder:validation:Minimum=0
	// +optional
	TokensPerMinute *int64 `json:"tokensPerMinute,omitempty"`
	// TokensPerDay is the most tokens admitted in one calendar day.
	// +kubebuilder:validation:Minimum=0
	// +optional
	TokensPerDay *int64 `json:"tokensPerDay,omitempty"`
	// TokensPerMonth is the most tokens admitted in one calendar month.
	// +kubebuilder:validation:Minimum=0
	// +optional
	TokensPerMonth *int64 `json:"tokensPerMonth,omitempty"`
}

// WindowUsage is what one limit of a budget has admitted in its current window.
type WindowUsage struct {
	// Limit names the limit, as in spec.limits: requestsPerMinute, tokensPerDay, ...
	Limit string `json:"limit"`
	// Used is what the current window has admitted so far: requests, or tokens reserved and
	// settled.
	Used int64 `json:"used"`
	// Max is the limit's value.
	Max int64 `json:"max"`
	// ResetsAt is when the current window ends.
	ResetsAt metav1.Time `json:"resetsAt"`
}

// InferenceBudgetStatus is the observed state of an InferenceBudget.
type InferenceBudgetStatus struct {
	// Conditions: `Ready` is True when the gateway enforces the budget as written; False with
	// reason InvalidTimeZone or StoreUnavailable says what is wrong.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation of the spec that the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Enforcement says where the counters live: Store (one Redis for every replica: exact),
	// InProcess (one replica, counters in its memory: exact), or PerReplica (several replicas
	// without a store: each admits the limits divided by the replicas).
	// +optional
	Enforcement string `json:"enforcement,omitempty"`

	// Usage is what each window has admitted, for budgets counted per workspace in their own
	// workspace, refreshed every few seconds. Per-caller and system-wide usage is in the
	// gateway's metrics (infergate_budget_used_total).
	// +listType=atomic
	// +optional
	Usage []WindowUsage `json:"usage,omitempty"`
}

// InferenceBudget limits the requests and tokens a workspace, or each of its callers, may use
// through the gateway: requests per second and minute, tokens per minute, day and month.
// Limits hold exactly across every gateway replica: tokens are reserved in one atomic step of
// the budget store before a request goes upstream, and settled from the usage the provider
// reports. A refused request gets 429 with Retry-After and OpenAI's x-ratelimit headers.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ibud,categories=inference
// +kubebuilder:printcolumn:name="Per",type=string,JSONPath=`.spec.per`
// +kubebuilder:printcolumn:name="Req/Min",type=integer,JSONPath=`.spec.limits.requestsPerMinute`
// +kubebuilder:printcolumn:name="Tokens/Min",type=integer,JSONPath=`.spec.limits.tokensPerMinute`
// +kubebuilder:printcolumn:name="Tokens/Day",type=integer,JSONPath=`.spec.limits.tokensPerDay`
// +kubebuilder:printcolumn:name="Tokens/Month",type=integer,JSONPath=`.spec.limits.tokensPerMonth`,priority=1
// +kubebuilder:printcolumn:name="Failure Mode",type=string,JSONPath=`.spec.failureMode`,priority=1
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.status.enforcement`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type InferenceBudget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired budget.
	// +required
	Spec InferenceBudgetSpec `json:"spec"`

	// Status is the observed state of the budget.
	// +optional
	Status InferenceBudgetStatus `json:"status,omitempty"`
}

// InferenceBudgetList is a list of InferenceBudgets.
//
// +kubebuilder:object:root=true
type InferenceBudgetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []InferenceBudget `json:"items"`
}

func init() {
	SchemeBuilder.Register(&InferenceBudget{}, &InferenceBudgetList{})
}
