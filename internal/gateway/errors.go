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
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/naming"
)

// apiError is an error the gateway answers itself. Its body carries both the NeMo shape
// ("detail") and the OpenAI shape ("error"), so both kinds of clients read it.
type apiError struct {
	status int
	code   string
	detail string
	// retryAfter, when set, is sent as Retry-After, in seconds.
	retryAfter int
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
}

// The errors of the contract, in one table.
func errInvalidName(field string) *apiError {
	return &apiError{http.StatusUnprocessableEntity, "invalid_name", "Invalid " + field + ": " + naming.RuleText, 0}
}

func errInvalidWorkspace() *apiError {
	return &apiError{http.StatusUnprocessableEntity, "invalid_name", "Invalid workspace: a workspace is a Kubernetes namespace: lowercase letters, digits and hyphens, at most 63 characters, starting and ending with a letter or digit.", 0}
}

func errWorkspaceMismatch(prefix, ws string) *apiError {
	return &apiError{http.StatusUnprocessableEntity, "invalid_name", "Invalid model: the workspace '" + prefix + "' in model does not match the workspace '" + ws + "' of the path; use '" + ws + "/<name>' or the bare name.", 0}
}

func errEntityNotFound(id string) *apiError {
	return &apiError{http.StatusNotFound, "model_not_found", "Model entity not found for " + id, 0}
}

func errModelNotFound(id string) *apiError {
	return &apiError{http.StatusNotFound, "model_not_found", "The model '" + id + "' does not exist or is not routable.", 0}
}

func errProviderNotFound(id string) *apiError {
	return &apiError{http.StatusNotFound, "provider_not_found", "Model provider not found for " + id, 0}
}

func errProviderNotReady(id string) *apiError {
	return &apiError{http.StatusNotFound, "provider_not_ready", "Provider not ready for " + id, 0}
}

func errProviderUnavailable(id string) *apiError {
	return &apiError{http.StatusServiceUnavailable, "provider_not_ready", "Provider " + id + " is not ready; check its Ready condition with `kubectl get provider` in its workspace.", 0}
}

func errLoopDetected() *apiError {
	return &apiError{http.StatusLoopDetected, "loop_detected", "Loop Detected: this request has already passed through this gateway (" + egress.HopHeader + "); a Provider's URL leads back to the gateway: point it at the model server instead.", 0}
}

func errNoReadyProvider(id string) *apiError {
	return &apiError{http.StatusServiceUnavailable, "no_ready_provider", "No ready provider for model entity " + id + "; check `kubectl get providers` in its workspace.", 0}
}

func errMissingCredentials(id string) *apiError {
	return &apiError{http.StatusFailedDependency, "secret_unavailable", "Could not fetch secret for provider " + id + "; secret not found or unreachable", 0}
}

func errInvalidPath() *apiError {
	return &apiError{http.StatusBadRequest, "invalid_path", "Invalid path: the part after /-/ may not have '.' or '..' segments, escaped or not: they would leave the provider's base path.", 0}
}

func errInvalidBody(err error) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_body", "Invalid request body: " + err.Error(), 0}
}

func errDuplicateModel() *apiError {
	return &apiError{http.StatusBadRequest, "invalid_body", "Invalid request body: 'model' is given more than once; give it once.", 0}
}

func errNoModel(why string) *apiError {
	return &apiError{http.StatusBadRequest, "missing_model", "Could not extract model from openai request: " + why, 0}
}

func errBodyTooLarge(limit int64) *apiError {
	return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", "Request body is larger than the limit of " + strconv.FormatInt(limit, 10) + " bytes.", 0}
}

func errBusy() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "gateway_busy", retryAfter: 1,
		detail: "The gateway is holding as many request bodies as its memory budget allows (--gateway-buffer-bytes); retry shortly."}
}

func errBodyTimeout(d time.Duration) *apiError {
	return &apiError{http.StatusRequestTimeout, "body_timeout", "Request Timeout: the request body did not arrive within " + d.String() + " (--gateway-body-read-timeout).", 0}
}

func errUnknownRoute() *apiError {
	return &apiError{http.StatusNotFound, "not_found", "Not Found: gateway routes are " + Prefix + "{workspace}/openai/-/..., .../model/{name}/-/... and .../provider/{name}/-/...", 0}
}

func errUpstreamUnreachable(id string) *apiError {
	return &apiError{http.StatusBadGateway, "upstream_unreachable", "Backend networking error: provider " + id + " could not be reached", 0}
}

func errUpstreamNotAllowed(id string, err error) *apiError {
	return &apiError{http.StatusBadGateway, "upstream_not_allowed", "Backend networking error: provider " + id + " was not contacted: " + err.Error(), 0}
}

func errUpstreamTimeout(id string) *apiError {
	return &apiError{http.StatusGatewayTimeout, "upstream_timeout", "Backend timed out: provider " + id + " did not answer in time", 0}
}

func errUpstreamAuth(id string, status int) *apiError {
	return &apiError{http.StatusBadGateway, "upstream_auth", "Backend returned " + strconv.Itoa(status) + ": provider " + id + " refused the gateway's credentials; check the API key Secret of the Provider", 0}
}

func errUnauthenticated(sent bool) *apiError {
	if !sent {
		return &apiError{http.StatusUnauthorized, "unauthenticated", "Unauthorized: send a Kubernetes bearer token as the API key (Authorization: Bearer <token>), such as a ServiceAccount token from `kubectl create token`.", 0}
	}
	return &apiError{http.StatusUnauthorized, "unauthenticated", "Unauthorized: the Kubernetes API server did not accept the bearer token; it may have expired, been revoked, or have been issued for another audience.", 0}
}

func errAccessUnavailable() *apiError {
	return &apiError{http.StatusServiceUnavailable, "access_unavailable", "The Kubernetes API server could not be asked whether this request is allowed; try again shortly.", 0}
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
	return &apiError{http.StatusForbidden, "forbidden", err.Error(), 0}
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
	_ = enc.Encode(errorBody{Detail: e.detail, Error: errorObject{Message: e.detail, Type: errorType(e.status), Code: e.code}})
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}
