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

// Package discovery probes an upstream: it lists the models it serves with
// `GET <base>/v1/models` (or checks a health path) and classifies what went wrong in terms a
// person can act on. It never makes a billed completion call.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/egress"
)

// Request is one probe.
type Request struct {
	// BaseURL of the upstream.
	BaseURL string
	// HealthPath, when set, is checked instead of listing models.
	HealthPath string
	// AuthHeader and AuthValue carry the API key, if any.
	AuthHeader, AuthValue string
	// StaticModels, when set, are the served models; the upstream is still probed.
	StaticModels []string
	// EnabledModels filters discovered models; empty allows all.
	EnabledModels []string
}

// Result is what a probe found.
type Result struct {
	// Ready is true when the upstream answered as expected.
	Ready bool
	// Reason is ReasonReady, ReasonUnauthorized, ReasonUnreachable or ReasonNotOpenAICompatible.
	Reason inferencev1alpha1.ConditionReason
	// Message explains the result; it never contains the key.
	Message string
	// Models are the served model ids after the allow-list, sorted.
	Models []string
}

// Prober probes upstreams over HTTP.
type Prober struct {
	Client *http.Client
	// HopID is the gateway id the probes carry in egress.HopHeader, so that a Provider whose
	// URL leads back to a gateway is answered 508 and reported as a loop.
	HopID string
}

// NewProber returns a prober whose requests time out after timeout, and that connects as
// egress.Default(allowLocal) allows: NewProberFor with the built-in rules.
func NewProber(timeout time.Duration, allowLocal bool, hopID string) *Prober {
	return NewProberFor(timeout, egress.Default(allowLocal), hopID)
}

// NewProberFor returns a prober whose requests time out after timeout. It never follows
// redirects (a key must not travel to another address), and connects, directly or through a
// proxy, only where policy allows.
func NewProberFor(timeout time.Duration, policy *egress.Policy, hopID string) *Prober {
	tr := policy.Transport(10 * time.Second)
	tr.MaxIdleConnsPerHost = 4
	return &Prober{HopID: hopID, Client: &http.Client{
		Timeout:       timeout,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// ModelsURL is where models are listed: base + "/v1/models", or base + "/models" when the base
// already ends in "/v1".
func ModelsURL(base string) string {
	base = strings.TrimRight(base, "/")
	if strings.HasSuffix(base, "/v1") {
		return base + "/models"
	}
	return base + "/v1/models"
}

// Probe probes one upstream.
func (p *Prober) Probe(ctx context.Context, r Request) Result {
	url := ModelsURL(r.BaseURL)
	if r.HealthPath != "" {
		url = strings.TrimRight(r.BaseURL, "/") + r.HealthPath
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Result{Reason: inferencev1alpha1.ReasonUnreachable, Message: fmt.Sprintf("invalid URL %q: %v", url, err)}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "infergate-probe")
	if r.AuthHeader != "" {
		req.Header.Set(r.AuthHeader, r.AuthValue)
	}
	if p.HopID != "" {
		req.Header.Set(egress.HopHeader, p.HopID) // last: no Provider setting may replace it
	}
	resp, err := p.Client.Do(req)
	switch {
	case egress.IsNotAllowed(err):
		return Result{Reason: inferencev1alpha1.ReasonAddressNotAllowed, Message: "GET " + url + ": " + describe(err)}
	case err != nil:
		return Result{Reason: inferencev1alpha1.ReasonUnreachable, Message: "GET " + url + ": " + describe(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return Result{Reason: inferencev1alpha1.ReasonUnreachable, Message: "GET " + url + ": reading the answer: " + describe(err)}
	}
	switch {
	case resp.StatusCode == http.StatusLoopDetected:
		return Result{Reason: inferencev1alpha1.ReasonLoop, Message: fmt.Sprintf("GET %s answered 508 Loop Detected: the URL leads back to an infergate gateway; point the Provider at the model server itself", url)}
	case resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.Header.Get("Location") != "":
		return Result{Reason: inferencev1alpha1.ReasonRedirected, Message: fmt.Sprintf("GET %s answered %d, a redirect to %s, which is not followed: a key must not travel to another address; set the Provider's URL to where the upstream really is",
			url, resp.StatusCode, redactURL(resp.Header.Get("Location")))}
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		hint := "the provider has no apiKeySecretRef"
		if r.AuthHeader != "" {
			hint = "check the key in the Secret named by spec.apiKeySecretRef"
		}
		return Result{Reason: inferencev1alpha1.ReasonUnauthorized, Message: fmt.Sprintf("GET %s answered %d: the upstream refused the credentials; %s", url, resp.StatusCode, hint)}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return Result{Reason: inferencev1alpha1.ReasonUnreachable, Message: fmt.Sprintf("GET %s answered %d", url, resp.StatusCode)}
	case resp.StatusCode >= 300:
		if r.HealthPath != "" {
			return Result{Reason: inferencev1alpha1.ReasonUnreachable, Message: fmt.Sprintf("health check GET %s answered %d", url, resp.StatusCode)}
		}
		return Result{Reason: inferencev1alpha1.ReasonNotOpenAICompatible, Message: fmt.Sprintf("GET %s answered %d: not an OpenAI-compatible model list; set spec.servedModels and spec.healthPath for upstreams that do not list models", url, resp.StatusCode)}
	}
	if len(r.StaticModels) > 0 || r.HealthPath != "" {
		models := slices.Clone(r.StaticModels)
		slices.Sort(models)
		return Result{Ready: true, Reason: inferencev1alpha1.ReasonReady, Message: fmt.Sprintf("GET %s answered %d", url, resp.StatusCode), Models: models}
	}
	var list struct {
		Data *[]struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil || list.Data == nil {
		return Result{Reason: inferencev1alpha1.ReasonNotOpenAICompatible, Message: "GET " + url + " did not answer an OpenAI model list ({\"data\":[{\"id\":...}]}); set spec.servedModels and spec.healthPath for upstreams that do not list models"}
	}
	var models []string
	for _, m := range *list.Data {
		if m.ID == "" || (len(r.EnabledModels) > 0 && !slices.Contains(r.EnabledModels, m.ID)) {
			continue
		}
		models = append(models, m.ID)
	}
	slices.Sort(models)
	models = slices.Compact(models)
	msg := fmt.Sprintf("%d models discovered", len(models))
	if len(r.EnabledModels) > 0 {
		msg = fmt.Sprintf("%d of %d listed models enabled by spec.enabledModels", len(models), len(*list.Data))
	}
	return Result{Ready: true, Reason: inferencev1alpha1.ReasonReady, Message: msg, Models: models}
}

// redactURL drops what a redirect target may carry that is not for a status: credentials and
// the query.
func redactURL(location string) string {
	u, err := neturl.Parse(location)
	if err != nil {
		return strconv.Quote(location)
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// describe turns a client error into words without the URL repeated.
func describe(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			err = inner
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return err.Error()
}
