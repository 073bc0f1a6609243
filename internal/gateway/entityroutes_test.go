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

package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

// A right to call one model pins what its provider runs: the entity routes serve the model's
// inference paths with POST only, so that a caller cannot reach the rest of a shared provider
// (its files, batches or stored responses) with the provider's key; the provider route stays
// raw.
func TestEntityRoutesServeInferencePathsOnly(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	reranker := entity("team", "reranker", backend("team", "nim", served))
	reranker.Paths = []string{"v1/ranking"}
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served)), reranker},
	}, gateway.Options{})
	hdr := map[string]string{"Content-Type": "application/json"}
	body := `{"model":"llama","purpose":"batch"}`

	refused := []struct {
		name, method, path, body string
		status                   int
		allow                    string
	}{
		{"files on the OpenAI route", "POST", "/openai/-/v1/files", body, http.StatusNotFound, ""},
		{"batches on the OpenAI route", "POST", "/openai/-/v1/batches", body, http.StatusNotFound, ""},
		{"a stored response on the OpenAI route", "GET", "/openai/-/v1/responses/resp_1", body, http.StatusNotFound, ""},
		{"files on the model route", "POST", "/model/llama/-/v1/files", body, http.StatusNotFound, ""},
		{"a stored response on the model route", "GET", "/model/llama/-/v1/responses/resp_1", "", http.StatusNotFound, ""},
		{"the provider's model list on the model route", "GET", "/model/llama/-/v1/models", "", http.StatusNotFound, ""},
		{"a prefix of an inference path", "POST", "/model/llama/-/v1/chat", body, http.StatusNotFound, ""},
		{"an inference path with a trailing slash", "POST", "/model/llama/-/v1/chat/completions/", body, http.StatusNotFound, ""},
		{"an inference path escaped", "POST", "/model/llama/-/v1%2Fchat/completions", body, http.StatusNotFound, ""},
		{"GET on an inference path", "GET", "/model/llama/-/v1/chat/completions", "", http.StatusMethodNotAllowed, "POST"},
		{"DELETE on an inference path", "DELETE", "/openai/-/v1/chat/completions", body, http.StatusMethodNotAllowed, "POST"},
		{"a path another model allows", "POST", "/model/llama/-/v1/ranking", body, http.StatusNotFound, ""},
		{"a default path of a model that names its own", "POST", "/model/reranker/-/v1/chat/completions", body, http.StatusNotFound, ""},
	}
	for _, tt := range refused {
		resp, data := do(t, tt.method, g.base("team")+tt.path, tt.body, hdr)
		if resp.StatusCode != tt.status || resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s: %s, Allow %q; want %d, Allow %q: %s", tt.name, resp.Status, resp.Header.Get("Allow"), tt.status, tt.allow, data)
			continue
		}
		if e := decodeError(t, data); tt.status == http.StatusNotFound && (e.Error.Code != "path_not_allowed" || !strings.Contains(e.Detail, "spec.paths")) {
			t.Errorf("%s: %s", tt.name, data)
		}
	}
	if n := up.sim.Served(); n != 0 {
		t.Fatalf("the upstream served %d refused requests", n)
	}

	// What the models allow goes through, and the provider route reaches any path.
	for _, tt := range []struct{ name, path, body, upstreamPath string }{
		{"chat on the OpenAI route", "/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`, "/v1/chat/completions"},
		{"embeddings on the model route", "/model/llama/-/v1/embeddings", `{"input":"hi"}`, "/v1/embeddings"},
		{"a path the model names", "/model/reranker/-/v1/ranking", `{"query":"q"}`, "/v1/ranking"},
		{"files on the provider route", "/provider/nim/-/v1/files", body, "/v1/files"},
	} {
		do(t, "POST", g.base("team")+tt.path, tt.body, hdr)
		if got := up.lastRequest(t); got.Path != tt.upstreamPath {
			t.Errorf("%s: the upstream got %s", tt.name, got.Path)
		}
	}
	var sent struct{ Model string }
	if err := json.Unmarshal(up.lastRequest(t).Body, &sent); err != nil || sent.Model != "llama" {
		t.Errorf("the provider route changed the body: %s", up.lastRequest(t).Body)
	}
}

// The model route sets the model in every body it forwards; a body it cannot rewrite is
// refused rather than sent with the client's own model.
func TestEntityRoutesRefuseBodiesTheyCannotRewrite(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{})
	for _, tt := range []struct {
		name, contentType, body string
		status                  int
	}{
		{"plain text", "text/plain", `{"model":"other/expensive","messages":[]}`, http.StatusUnsupportedMediaType},
		{"a form", "application/x-www-form-urlencoded", "model=expensive", http.StatusUnsupportedMediaType},
		{"multipart", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nexpensive\r\n--x--\r\n", http.StatusUnsupportedMediaType},
		{"JSON the gateway cannot read", "application/json", `{"model":"expensive","messages":[],}`, http.StatusBadRequest},
		{"JSON without a type", "", `{"model":"expensive" "x":1}`, http.StatusBadRequest},
		{"JSON that is not an object", "application/json", `["expensive"]`, http.StatusBadRequest},
		{"two models", "application/json", `{"model":"llama","Model":"expensive"}`, http.StatusBadRequest},
	} {
		resp, data := do(t, "POST", g.base("team")+"/model/llama/-/v1/chat/completions", tt.body, map[string]string{"Content-Type": tt.contentType})
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %s, want %d: %s", tt.name, resp.Status, tt.status, data)
		}
	}
	if n := up.sim.Served(); n != 0 {
		t.Fatalf("the upstream served %d bodies the gateway could not rewrite", n)
	}
	// An empty object gets the model.
	do(t, "POST", g.base("team")+"/model/llama/-/v1/chat/completions", `{}`, map[string]string{"Content-Type": "application/json"})
	if got := string(up.lastRequest(t).Body); got != `{"model":"`+served+`"}` {
		t.Errorf("the upstream got %s", got)
	}
}
