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

package discovery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/simulator"
)

func TestProbe(t *testing.T) {
	sim := httptest.NewServer(simulator.New(simulator.Options{Models: []string{"b/two", "a/one", "c/three"}, APIKey: "k"}))
	defer sim.Close()
	notOpenAI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		w.Write([]byte(`<html>hello</html>`))
	}))
	defer notOpenAI.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	p := NewProber(2 * time.Second)
	tests := []struct {
		name    string
		req     Request
		reason  inferencev1alpha1.ConditionReason
		models  []string
		message string
	}{
		{"discovers and sorts", Request{BaseURL: sim.URL, AuthHeader: "Authorization", AuthValue: "Bearer k"}, inferencev1alpha1.ReasonReady, []string{"a/one", "b/two", "c/three"}, "3 models discovered"},
		{"base ending in /v1", Request{BaseURL: sim.URL + "/v1/", AuthHeader: "Authorization", AuthValue: "Bearer k"}, inferencev1alpha1.ReasonReady, []string{"a/one", "b/two", "c/three"}, ""},
		{"allow-list", Request{BaseURL: sim.URL, AuthHeader: "X-Api-Key", AuthValue: "k", EnabledModels: []string{"c/three", "z/none"}}, inferencev1alpha1.ReasonReady, []string{"c/three"}, "1 of 3 listed models enabled"},
		{"wrong key", Request{BaseURL: sim.URL, AuthHeader: "Authorization", AuthValue: "Bearer nope"}, inferencev1alpha1.ReasonUnauthorized, nil, "check the key in the Secret"},
		{"no key", Request{BaseURL: sim.URL}, inferencev1alpha1.ReasonUnauthorized, nil, "has no apiKeySecretRef"},
		{"nothing listening", Request{BaseURL: dead.URL}, inferencev1alpha1.ReasonUnreachable, nil, "connection refused"},
		{"not OpenAI", Request{BaseURL: notOpenAI.URL}, inferencev1alpha1.ReasonNotOpenAICompatible, nil, "set spec.servedModels and spec.healthPath"},
		{"health path with static models", Request{BaseURL: notOpenAI.URL, HealthPath: "/healthz", StaticModels: []string{"m"}}, inferencev1alpha1.ReasonReady, []string{"m"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.Probe(context.Background(), tt.req)
			if r.Reason != tt.reason || r.Ready != (tt.reason == inferencev1alpha1.ReasonReady) || strings.Join(r.Models, ",") != strings.Join(tt.models, ",") {
				t.Errorf("got %+v", r)
			}
			if !strings.Contains(r.Message, tt.message) {
				t.Errorf("message %q does not say %q", r.Message, tt.message)
			}
			if strings.Contains(r.Message, "nope") || strings.Contains(r.Message, "Bearer") {
				t.Errorf("message leaks the key: %q", r.Message)
			}
		})
	}
}
