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
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

// accessLines collects the lines of a gateway's logger, decoded.
type accessLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   strings.Builder
}

func (a *accessLines) logger() logr.Logger {
	return funcr.NewJSON(func(obj string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.raw.WriteString(obj + "\n")
		var line map[string]any
		if err := json.Unmarshal([]byte(obj), &line); err == nil {
			a.lines = append(a.lines, line)
		}
	}, funcr.Options{})
}

// of returns the access lines of the request with id, waiting a little for the first: the line
// is written once the handler returns, which may be after the client has read the response.
func (a *accessLines) of(id string, wait time.Duration) []map[string]any {
	for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
		a.mu.Lock()
		var out []map[string]any
		for _, l := range a.lines {
			if l["logger"] == "access" && l["requestID"] == id {
				out = append(out, l)
			}
		}
		a.mu.Unlock()
		if len(out) > 0 || time.Now().After(deadline) {
			return out
		}
	}
}

// One line per request, whatever answered it: a stream retried on another provider, with its
// attempts, tokens and time to first event; a model list; an unknown model. Without the flag,
// none.
func TestAccessLog(t *testing.T) {
	down := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	up := newUpstream(t, simulator.Options{Name: "up", Models: []string{served}, Chunks: 3})
	llama := entity("team", "llama", backend("team", "down", served), backend("team", "up", served))
	llama.Balancing = routing.Failover // the one that answers 503 first
	spec := routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "down", down), provider("team", "up", up.srv.URL)},
		Entities:  []routing.EntitySpec{llama},
	}
	var logs accessLines
	g := newGateway(t, spec, gateway.Options{Log: logs.logger(), AccessLog: true})

	var resp *http.Response
	stream := g.client("team").Chat.Completions.NewStreaming(ctxTimeout(t, 30*time.Second), openai.ChatCompletionNewParams{
		Model: "llama", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}, option.WithResponseInto(&resp))
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	lines := logs.of(id, 5*time.Second)
	if len(lines) != 1 {
		t.Fatalf("%d access lines for the stream %s; logs:\n%s", len(lines), id, logs.raw.String())
	}
	l := lines[0]
	for k, want := range map[string]any{"msg": "request", "method": "POST", "workspace": "team", "entity": "llama", "provider": "up",
		"attempts": float64(2), "status": float64(200), "completionTokens": float64(3)} {
		if l[k] != want {
			t.Errorf("%s = %v, want %v; line %v", k, l[k], want, l)
		}
	}
	for _, k := range []string{"duration", "ttft", "promptTokens"} {
		if _, ok := l[k]; !ok {
			t.Errorf("no %s in %v", k, l)
		}
	}
	if _, ok := l["user"]; ok {
		t.Errorf("a user without authentication: %v", l)
	}

	for path, status := range map[string]float64{"/openai/-/v1/models": 200, "/openai/-/v1/models/nope": 404} {
		resp, _ := do(t, "GET", g.base("team")+path, "", nil)
		lines := logs.of(resp.Header.Get("X-Request-Id"), 5*time.Second)
		if len(lines) != 1 || lines[0]["status"] != status || lines[0]["path"] != gateway.Prefix+"team"+path {
			t.Errorf("GET %s: access lines %v, want one with status %v", path, lines, status)
		}
	}

	var quiet accessLines
	g = newGateway(t, spec, gateway.Options{Log: quiet.logger()})
	resp, _ = do(t, "GET", g.base("team")+"/openai/-/v1/models", "", nil)
	if lines := quiet.of(resp.Header.Get("X-Request-Id"), 100*time.Millisecond); len(lines) != 0 {
		t.Errorf("access lines without AccessLog: %v", lines)
	}
}
