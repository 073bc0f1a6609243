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
	"strings"
	"testing"

	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/routing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		method, path string
		want         route
	}{
		{"POST", Prefix + "team/openai/-/v1/chat/completions", route{routeOpenAI, "team", "", "v1/chat/completions"}},
		{"GET", Prefix + "team/openai/-/v1/models", route{routeModelsList, "team", "", "v1/models"}},
		{"POST", Prefix + "team/openai/-/v1/models", route{routeOpenAI, "team", "", "v1/models"}},
		{"GET", Prefix + "team/openai/-/v1/models/team%2Fllama", route{routeModelsGet, "team", "team%2Fllama", "v1/models/team%2Fllama"}},
		{"GET", Prefix + "team/openai/-/v1/models/team/llama", route{routeModelsGet, "team", "team/llama", "v1/models/team/llama"}},
		{"POST", Prefix + "team/openai/-", route{routeOpenAI, "team", "", ""}},
		{"POST", Prefix + "team/model/llama/-/v1/chat/completions", route{routeEntity, "team", "llama", "v1/chat/completions"}},
		{"POST", Prefix + "team/model/llama/-", route{routeEntity, "team", "llama", ""}},
		{"POST", Prefix + "team/model/meta/llama/-/v1/x", route{routeEntity, "team", "meta/llama", "v1/x"}},
		{"GET", Prefix + "team/provider/nim/-/v1/models", route{routeProvider, "team", "nim", "v1/models"}},
		{"GET", Prefix + "team/provider/nim/ready", route{routeProviderReady, "team", "nim", ""}},
		{"POST", Prefix + "team/provider/nim/ready", route{}},
		{"GET", Prefix + "team/provider/nim/-/x/ready", route{routeProvider, "team", "nim", "x/ready"}},
		{"GET", Prefix + "team/provider/nim", route{}},
		{"GET", Prefix + "team", route{}},
		{"GET", "/v1/models", route{}},
		{"GET", Prefix + "team/other/-/x", route{}},
	}
	for _, tt := range tests {
		if got := parsePath(tt.method, tt.path); got != tt.want {
			t.Errorf("parsePath(%s %s) = %+v, want %+v", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestUpstreamPath(t *testing.T) {
	tests := []struct {
		base     string
		v1       bool
		trailing string
		want     string
	}{
		{"", false, "v1/chat/completions", "/v1/chat/completions"},
		{"/v1", true, "v1/chat/completions", "/v1/chat/completions"},
		{"/v1", true, "chat/completions", "/v1/chat/completions"},
		{"/openai/v1", true, "v1/models", "/openai/v1/models"},
		{"/api", false, "v1/models", "/api/v1/models"},
		{"", false, "", "/"},
		{"/v1", true, "v1", "/v1"},
	}
	for _, tt := range tests {
		if got := upstreamPath(tt.base, tt.v1, tt.trailing); got != tt.want {
			t.Errorf("upstreamPath(%q, %v, %q) = %q, want %q", tt.base, tt.v1, tt.trailing, got, tt.want)
		}
	}
}

// FuzzParsePath: parsing never panics, and what it finds is a substring of the path in the
// right place, so a route can always be put back together.
func FuzzParsePath(f *testing.F) {
	for _, seed := range []string{
		Prefix + "team/openai/-/v1/chat/completions", Prefix + "team/model/llama/-/v1/x?y",
		Prefix + "team/provider/nim/ready", Prefix + "/openai/-/", Prefix + "a/model//-/", Prefix + "a/provider/-/-/-/",
		Prefix + "a/openai/-/v1/models/", Prefix + "w/model/x/-", "/", "",
	} {
		f.Add("GET", seed)
		f.Add("POST", seed)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r := parsePath(method, path)
		if r.kind == routeUnknown {
			return
		}
		if !strings.HasPrefix(path, Prefix+r.workspace+"/") {
			t.Fatalf("workspace %q is not the path's", r.workspace)
		}
		if strings.Contains(r.workspace, "/") {
			t.Fatalf("workspace %q has a slash", r.workspace)
		}
		if !strings.HasSuffix(path, r.trailing) {
			t.Fatalf("trailing %q does not end the path %q", r.trailing, path)
		}
		switch r.kind {
		case routeEntity, routeProvider:
			seg := map[routeKind]string{routeEntity: "model/", routeProvider: "provider/"}[r.kind]
			rebuilt := Prefix + r.workspace + "/" + seg + r.name + "/-"
			if r.trailing != "" || strings.HasSuffix(path, "/-/") {
				rebuilt += "/" + r.trailing
			}
			if rebuilt != path {
				t.Fatalf("%+v rebuilds %q, not %q", r, rebuilt, path)
			}
			if strings.Contains(r.name, "/-/") {
				t.Fatalf("name %q holds the separator", r.name)
			}
		case routeModelsList, routeModelsGet, routeProviderReady:
			if method != "GET" {
				t.Fatalf("%v route for %s", r.kind, method)
			}
		}
	})
}

// FuzzRequestBody: for any JSON object body, the body sent upstream is valid JSON, carries the
// served model, keeps every other field of the client, adds the defaults it lacks and
// enforces the required fields.
func FuzzRequestBody(f *testing.F) {
	for _, seed := range []string{
		`{"model":"team/llama","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[],"max_tokens":5,"user":"x"}`,
		`{}`, ` { "model" : 1 , "user" : null } `, `{"model":"a","model":"b"}`, `{"m\u006fdel":"x","max_tokens":1}`,
	} {
		f.Add([]byte(seed), true)
		f.Add([]byte(seed), false)
	}
	p := &routing.Provider{
		DefaultBody:  mustFields(`max_tokens`, `64`, `temperature`, `0.2`),
		RequiredBody: mustFields(`user`, `"gateway"`),
	}
	served := []byte(`"meta/llama"`)
	f.Fuzz(func(t *testing.T, body []byte, extras bool) {
		members, err := jsonfield.Members(nil, body)
		if err != nil {
			return
		}
		provider := &routing.Provider{}
		if extras {
			provider = p
		}
		model := -1
		for i, m := range members {
			if m.KeyIs(body, "model") {
				model = i // the last, as decoders read
			}
		}
		out := bytes.Join(requestBody(nil, body, members, model, true, served, provider, nil), nil)
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("upstream body %q is not a JSON object: %v", out, err)
		}
		var in map[string]json.RawMessage
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatal(err)
		}
		if string(got["model"]) != string(served) {
			t.Fatalf("model %s, want %s (body %q -> %q)", got["model"], served, body, out)
		}
		for k, v := range in {
			if k == "model" || (extras && k == "user") {
				continue
			}
			if !bytes.Equal(got[k], v) {
				t.Fatalf("field %q changed from %s to %s", k, v, got[k])
			}
		}
		if extras {
			if string(got["user"]) != `"gateway"` {
				t.Fatalf("required user = %s", got["user"])
			}
			for _, d := range []string{"max_tokens", "temperature"} {
				if _, had := in[d]; !had && got[d] == nil {
					t.Fatalf("default %s missing from %q", d, out)
				}
			}
		}
	})
}

func mustFields(kv ...string) []routing.BodyField {
	var spec []routing.BodyField
	for i := 0; i < len(kv); i += 2 {
		spec = append(spec, routing.BodyField{Name: kv[i], Value: json.RawMessage(kv[i+1])})
	}
	table, errs := routing.New(routing.Spec{Providers: []routing.ProviderSpec{{Workspace: "w", Name: "p", BaseURL: "http://x", DefaultBody: spec}}}, nil)
	if len(errs) > 0 {
		panic(errs)
	}
	p, _ := table.Provider("w", "p")
	return p.DefaultBody
}

// FuzzResponseRewrite: rewriting never breaks a JSON document and replaces exactly the served
// model.
func FuzzResponseRewrite(f *testing.F) {
	for _, seed := range []string{
		`{"id":"x","model":"meta/llama","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
		`{"type":"response.completed","response":{"model":"meta/llama","usage":{"input_tokens":1,"output_tokens":2}}}`,
		`{"type":"message_start","message":{"model":"meta\/llama"}}`, `{"model":"other"}`, `[1]`, `{"model":{"model":"meta/llama"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		rw := responseRewriter{served: []byte("meta/llama"), id: []byte(`"team/llama"`)}
		segs, _ := rw.rewrite(nil, doc)
		out := bytes.Join(segs, nil)
		if !json.Valid(doc) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("rewrite of valid %q is invalid: %q", doc, out)
		}
		var before, after map[string]json.RawMessage
		if json.Unmarshal(doc, &before) != nil {
			if !bytes.Equal(doc, out) {
				t.Fatalf("a non-object was changed: %q -> %q", doc, out)
			}
			return
		}
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatal(err)
		}
		var m string
		if json.Unmarshal(before["model"], &m) == nil && m == "meta/llama" {
			if string(after["model"]) != `"team/llama"` {
				t.Fatalf("model not rewritten: %q -> %q", doc, out)
			}
		} else if !bytes.Equal(before["model"], after["model"]) {
			t.Fatalf("model %s changed to %s", before["model"], after["model"])
		}
	})
}

func TestEscapesBase(t *testing.T) {
	for trailing, want := range map[string]bool{
		"v1/chat/completions": false, "": false, "v1/models/meta..llama": false, "v1/files/file-1.jsonl": false, "v1/...": false,
		"..": true, ".": true, "v1/../x": true, "%2e%2E/x": true, "v1/%2e": true, "..%2fx": true, `..\x`: true, "..%5cx": true,
		"v1/%zz": true, // an escape that does not decode is refused rather than guessed at
	} {
		if got := escapesBase(trailing); got != want {
			t.Errorf("escapesBase(%q) = %v, want %v", trailing, got, want)
		}
	}
}
