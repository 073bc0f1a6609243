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

package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/naming"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/routing"
)

// apiError is an error the gateway answers itself. Its body carries both the NeMo shape
// ("detail") and the OpenAI shape ("error"), so both kinds of clients read it.
type apiError struct {
	status int
	code   string
	detail string
	// retryAfter, when set, is sent as Retry-After, in seconds.
	retryAfter int
	// allow, when set, is sent as Allow: the methods a 405 would accept.
	allow string
	// typ, when set, replaces the type the status gives; budget and limit name what refused.
	typ, budget, limit string
}

func (e *apiError) Error() string { return e.detail }

type errorBody struct {
	Detail string      `json:"detail"`
	Error  errorObject `json:"error"`
}

type errorObject struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
	// Budget and Limit name the InferenceBudget and its limit that refused a request.
	Budget string `json:"budget,omitempty"`
	Limit  string `json:"limit,omitempty"`
}

// The errors of the contract, in one table.
func errInvalidName(field string) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, code: "invalid_name", detail: "Invalid " + field + ": " + naming.RuleText}
}

func errInvalidWorkspace() *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, code: "invalid_name", detail: "Invalid workspace: a workspace is a Kubernetes namespace: lowercase letters, digits and hyphens, at most 63 characters, starting and ending with a letter or digit."}
}

func errWorkspaceMismatch(prefix, ws string) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, code: "invalid_name", detail: "Invalid model: the workspace '" + prefix + "' in model does not match the workspace '" + ws + "' of the path; use '" + ws + "/<name>' or the bare name."}
}

func errEntityNotFound(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: "model_not_found", detail: "Model entity not found for " + id}
}

func errModelNotFound(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: "model_not_found", detail: "The model '" + id + "' does not exist or is not routable."}
}

func errProviderNotFound(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: "provider_not_found", detail: "Model provider not found for " + id}
}

func errProviderNotReady(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: "provider_not_ready", detail: "Provider not ready for " + id}
}

func errProviderUnavailable(id string) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "provider_not_ready", detail: "Provider " + id + " is not ready; check its Ready condition with `kubectl get provider` in its workspace."}
}

func errLoopDetected() *apiError {
	return &apiError{status: http.StatusLoopDetected, code: "loop_detected", detail: "Loop Detected: this request has already passed through this gateway (" + egress.HopHeader + "); a Provider's URL leads back to the gateway: point it at the model server instead."}
}

func errNoReadyProvider(id string) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "no_ready_provider", detail: "No ready provider for model entity " + id + "; check `kubectl get providers` in its workspace."}
}

func errMissingCredentials(id string) *apiError {
	return &apiError{status: http.StatusFailedDependency, code: "secret_unavailable", detail: "Could not fetch secret for provider " + id + "; secret not found or unreachable"}
}

func errInvalidPath() *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_path", detail: "Invalid path: the part after /-/ may not have '.' or '..' segments, escaped or not: they would leave the provider's base path."}
}

func errInvalidBody(err error) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_body", detail: "Invalid request body: " + err.Error()}
}

func errDuplicateModel() *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_body", detail: "Invalid request body: 'model' is given more than once, or in another letter case (servers that ignore case read 'Model' as model); give it once, as 'model'."}
}

func errUnsupportedMediaType(ct string) *apiError {
	return &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
		detail: "Unsupported Media Type: the model route sets the model in JSON bodies and cannot rewrite a body of type '" + ct + "'; send application/json, or call the provider route for other bodies."}
}

func errPathNotAllowed(e *routing.Entity, trailing string) *apiError {
	return &apiError{status: http.StatusNotFound, code: "path_not_allowed",
		detail: "Not Found: '" + trailing + "' is not an inference path of model " + e.ID + "; it accepts " + strings.Join(e.Paths, ", ") +
			" (its ModelEntity's spec.paths). Other paths of its providers are reached through the provider route."}
}

func errMethodNotAllowed(method, allow string) *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", allow: allow,
		detail: "Method Not Allowed: the inference paths of a model accept " + allow + ", not " + method + "."}
}

func errCallerBusy() *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "caller_busy", retryAfter: 1,
		detail: "Too Many Requests: the request bodies of this caller (the ServiceAccounts of a namespace count as one) in the gateway take its whole share of the gateway's memory budget (--gateway-buffer-bytes-per-caller); retry when some of them are done."}
}

func errInvalidBudgetField(name, want string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_body",
		detail: "Invalid request body: '" + name + "' must be " + want + " under an InferenceBudget, which reserves the tokens it allows."}
}

func errBudgetUnavailable() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "budget_unavailable", retryAfter: 1,
		detail: "Service Unavailable: the budget store cannot be reached, and an InferenceBudget that applies to this request fails closed (spec.failureMode); retry shortly."}
}

// errBudgetRefused says which budget and limit refused a request, and when to retry. A
// second or minute limit is a rate limit (code rate_limit_exceeded); a day or month limit is a
// budget spent (code budget_exhausted, type insufficient_quota, as OpenAI's spent quota).
func errBudgetRefused(c *quota.Counter, d *quota.Decision, i int, div int64) *apiError {
	retry := max(int((d.RetryAfter+time.Second-1)/time.Second), 1)
	limit := c.Limit.Max / div
	used := d.States[i].Used
	unit, what := "requests", "request"
	if c.Limit.Tokens {
		unit, what = "tokens", "tokens"
	}
	share := ""
	if div > 1 {
		share = " (this replica's share: the limit divided by " + strconv.FormatInt(div, 10) + " replicas)"
	}
	e := &apiError{status: http.StatusTooManyRequests, retryAfter: retry, budget: c.Budget.ID, limit: c.Limit.Name}
	switch c.Limit.Window {
	case quota.Day, quota.Month:
		e.code, e.typ = "budget_exhausted", "insufficient_quota"
		e.detail = "Budget exhausted: InferenceBudget " + c.Budget.ID + " allows " + strconv.FormatInt(limit, 10) + " " + unit + " per " + c.Limit.Window.String() + share +
			"; " + strconv.FormatInt(used, 10) + " are used and the " + what + " of this request do not fit. It renews in " + resetText(d.RetryAfter) + "."
	default:
		e.code, e.typ = "rate_limit_exceeded", unit
		e.detail = "Rate limit reached: InferenceBudget " + c.Budget.ID + " allows " + strconv.FormatInt(limit, 10) + " " + unit + " per " + c.Limit.Window.String() + share +
			" (" + c.Limit.Name + "); " + strconv.FormatInt(used, 10) + " are used. Retry in " + resetText(d.RetryAfter) + "."
	}
	return e
}

func errNoModel(why string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "missing_model", detail: "Could not extract model from openai request: " + why}
}

func errBodyTooLarge(limit int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: "body_too_large", detail: "Request body is larger than the limit of " + strconv.FormatInt(limit, 10) + " bytes."}
}

func errBusy() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "gateway_busy", retryAfter: 1,
		detail: "The gateway is holding as many request bodies as its memory budget allows (--gateway-buffer-bytes); retry shortly."}
}

func errBodyTimeout(d time.Duration) *apiError {
	return &apiError{status: http.StatusRequestTimeout, code: "body_timeout", detail: "Request Timeout: the request body did not arrive within " + d.String() + " (--gateway-body-read-timeout)."}
}

func errUnknownRoute() *apiError {
	return &apiError{status: http.StatusNotFound, code: "not_found", detail: "Not Found: gateway routes are " + Prefix + "{workspace}/openai/-/..., .../model/{name}/-/... and .../provider/{name}/-/..."}
}

func errUpstreamUnreachable(id string) *apiError {
	return &apiError{status: http.StatusBadGateway, code: "upstream_unreachable", detail: "Backend networking error: provider " + id + " could not be reached"}
}

func errUpstreamNotAllowed(id string, err error) *apiError {
	return &apiError{status: http.StatusBadGateway, code: "upstream_not_allowed", detail: "Backend networking error: provider " + id + " was not contacted: " + err.Error()}
}

func errUpstreamTimeout(id string) *apiError {
	return &apiError{status: http.StatusGatewayTimeout, code: "upstream_timeout", detail: "Backend timed out: provider " + id + " did not answer in time"}
}

func errUpstreamAuth(id string, status int) *apiError {
	return &apiError{status: http.StatusBadGateway, code: "upstream_auth", detail: "Backend returned " + strconv.Itoa(status) + ": provider " + id + " refused the gateway's credentials; check the API key Secret of the Provider"}
}

func errUnauthenticated(sent bool) *apiError {
	if !sent {
		return &apiError{status: http.StatusUnauthorized, code: "unauthenticated", detail: "Unauthorized: send a Kubernetes bearer token as the API key (Authorization: Bearer <token>), such as a ServiceAccount token from `kubectl create token`."}
	}
	return &apiError{status: http.StatusUnauthorized, code: "unauthenticated", detail: "Unauthorized: the Kubernetes API server did not accept the bearer token; it may have expired, been revoked, or have been issued for another audience."}
}

func errAccessUnavailable() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "access_unavailable", detail: "The Kubernetes API server could not be asked whether this request is allowed; try again shortly."}
}

// errForbidden words a denial as the API server does, naming the user, verb, resource and
// workspace: `modelentities.inference.infergate.dev "llama" is forbidden: User "alice" cannot
// create resource "modelentities/proxy" in API group "inference.infergate.dev" in the
// namespace "team"`.
func errForbidden(a authorizer.AttributesRecord, reason string) *apiError {
	name := ""
	if a.User != nil {
		name = a.User.GetName()
	}
	var msg string
	if a.ResourceRequest {
		resource := a.Resource
		if a.Subresource != "" {
			resource += "/" + a.Subresource
		}
		msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", name, a.Verb, resource, a.APIGroup, a.Namespace)
	} else {
		msg = fmt.Sprintf("User %q cannot %s path %q", name, a.Verb, a.Path)
	}
	if reason != "" {
		msg += ": " + reason
	}
	err := apierrors.NewForbidden(schema.GroupResource{Group: a.APIGroup, Resource: a.Resource}, a.Name, errors.New(msg))
	return &apiError{status: http.StatusForbidden, code: "forbidden", detail: err.Error()}
}

func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	default:
		return "invalid_request_error"
	}
}

// writeError answers e as JSON.
func writeError(w http.ResponseWriter, e *apiError) {
	// Not HTML-escaped: the body is JSON for programs and people reading curl output, and
	// messages such as "Bearer <token>" stay readable.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	typ := e.typ
	if typ == "" {
		typ = errorType(e.status)
	}
	_ = enc.Encode(errorBody{Detail: e.detail, Error: errorObject{Message: e.detail, Type: typ, Code: e.code, Budget: e.budget, Limit: e.limit}})
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.allow != "" {
		h.Set("Allow", e.allow)
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}
