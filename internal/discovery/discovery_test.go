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
	"sync/atomic"
	"testing"
	"time"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/egress"
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

	p := NewProber(2*time.Second, true, "")
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

// A probe never follows a redirect: the key would travel to another address, and the Provider
// would report that address's models as its own.
func TestProbeDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(simulator.New(simulator.Options{Models: []string{"other/model"}}))
	defer other.Close()
	otherCounted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		other.Config.Handler.ServeHTTP(w, r)
	}))
	defer otherCounted.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherCounted.URL+"/v1/models?token=secret", http.StatusFound)
	}))
	defer redirecting.Close()

	r := NewProber(2*time.Second, true, "").Probe(context.Background(), Request{BaseURL: redirecting.URL, AuthHeader: "X-Api-Key", AuthValue: "sk-probe"})
	if r.Ready || r.Reason != inferencev1alpha1.ReasonRedirected || !strings.Contains(r.Message, "a redirect to "+otherCounted.URL+"/v1/models, which is not followed") {
		t.Errorf("got %+v", r)
	}
	if strings.Contains(r.Message, "secret") {
		t.Errorf("the message carries the redirect's query: %q", r.Message)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect target received %d requests", n)
	}
}

// Loopback and link-local upstreams are refused unless allowed, and the reason says so.
func TestProbeRefusesLocalAddresses(t *testing.T) {
	var reached atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	defer local.Close()
	for _, base := range []string{local.URL, strings.Replace(local.URL, "127.0.0.1", "localhost", 1), "http://169.254.169.254"} {
		r := NewProber(2*time.Second, false, "").Probe(context.Background(), Request{BaseURL: base})
		if r.Ready || r.Reason != inferencev1alpha1.ReasonAddressNotAllowed || !strings.Contains(r.Message, "--allow-local-upstreams") {
			t.Errorf("%s: got %+v", base, r)
		}
	}
	if reached.Load() != 0 {
		t.Error("a refused probe reached the server")
	}
}

// A probe carries the gateway's hop id, and a 508 from a gateway it led back to is a loop.
func TestProbeMarksItsHopAndReportsLoops(t *testing.T) {
	var hop string
	gatewayLike := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hop = r.Header.Get(egress.HopHeader)
		w.WriteHeader(http.StatusLoopDetected)
	}))
	defer gatewayLike.Close()
	for _, authHeader := range []string{"", "Authorization", egress.HopHeader, "x-infergate-hop"} {
		hop = ""
		// A key sent in the hop header itself (a Provider stored before the CRD refused
		// that name) must not replace the hop id, or the loop would go unseen.
		r := NewProber(2*time.Second, true, "infergate-test").Probe(context.Background(), Request{BaseURL: gatewayLike.URL, AuthHeader: authHeader, AuthValue: "forged"})
		if hop != "infergate-test" {
			t.Errorf("key in %q: the probe carried %s %q", authHeader, egress.HopHeader, hop)
		}
		if r.Ready || r.Reason != inferencev1alpha1.ReasonLoop {
			t.Errorf("key in %q: got %+v", authHeader, r)
		}
	}
}
