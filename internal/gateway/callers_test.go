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
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
)

// stalledBody is a request whose client announced a body, sent part of it, and went quiet.
type stalledBody struct {
	conn    net.Conn
	replied chan *http.Response // the gateway's answer, if it gives one before the body ends
}

// sendPartly sends the head of a POST announcing length bytes of body, then sent, and waits no
// further; the answer, when one comes, arrives on replied.
func sendPartly(t *testing.T, gatewayURL, path, token string, length int, sent string) *stalledBody {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(gatewayURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, length)
	if token != "" {
		head += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"+sent); err != nil {
		t.Fatal(err)
	}
	s := &stalledBody{conn: conn, replied: make(chan *http.Response, 1)}
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			s.replied <- resp
		}
		close(s.replied)
	}()
	return s
}

// answer waits for the gateway's answer to a stalled body; nil when it closes the connection
// without one.
func (s *stalledBody) answer(t *testing.T) *http.Response {
	t.Helper()
	select {
	case resp := <-s.replied:
		return resp
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to a stalled body in 30s")
		return nil
	}
}

// A client that announces a large body and sends none of it holds none of the memory budget:
// bytes are reserved as they arrive, so such clients leave others' requests at 200.
func TestAnnouncedBodiesHoldNothing(t *testing.T) {
	const budget = 8 << 20
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{BufferBytes: budget, MaxBodyBytes: budget, BodyReadTimeout: time.Minute})
	for range 4 {
		sendPartly(t, g.url, gateway.Prefix+"team/openai/-/v1/chat/completions", "", budget, "{")
		sendPartly(t, g.url, gateway.Prefix+"team/model/llama/-/v1/chat/completions", "", budget, `{"messages":[`)
	}
	for i := range 10 {
		resp, body := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`,
			map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d beside 8 announced bodies: %s %s", i, resp.Status, body)
		}
	}
}

// With authentication, one caller cannot hold others' share of the memory budget: a caller
// without rights is answered 403 as soon as its body's model has arrived, before the rest is
// read; the bodies of one caller (the ServiceAccounts of a namespace count as one) hold its
// share at most, past which its own requests get 429; and all the while, other callers'
// small requests get 200.
func TestCallersCannotHoldOthersBudget(t *testing.T) {
	c := startCluster(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c.run("", "apply", "-k", filepath.Join(root, "config", "access"))
	for _, ns := range []string{"team-a", "team-b", "intruder"} {
		c.run("", "create", "namespace", ns)
	}
	checker, err := access.New(c.env.Config, access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	const (
		budget   = 8 << 20
		share    = 2 << 20
		bodySize = 4 << 20
	)
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team-a", "nim", up.srv.URL), provider("team-b", "nim", up.srv.URL),
			provider("intruder", "nim", up.srv.URL)},
		Entities: []routing.EntitySpec{entity("team-a", "llama", backend("team-a", "nim", served)),
			entity("team-b", "llama", backend("team-b", "nim", served)), entity("intruder", "llama", backend("intruder", "nim", served))},
	}, gateway.Options{Access: checker, BufferBytes: budget, CallerBufferBytes: share, MaxBodyBytes: bodySize, BodyReadTimeout: 20 * time.Second})

	appA, appB := c.serviceAccount("team-a", "app"), c.serviceAccount("team-b", "app")
	c.bind("team-a", "app-calls", "infergate-model-user", "app")
	c.bind("team-b", "app-calls", "infergate-model-user", "app")
	// The intruder may call its own namespace's models, and none of the others'.
	var intruders []string
	for i := range 3 {
		name := fmt.Sprintf("bot-%d", i)
		intruders = append(intruders, c.serviceAccount("intruder", name))
		c.bind("intruder", name+"-calls", "infergate-model-user", name)
	}
	smallRequestsPass := func(when string) {
		t.Helper()
		for _, caller := range []struct{ ws, token string }{{"team-a", appA}, {"team-b", appB}} {
			resp, body := do(t, "POST", g.base(caller.ws)+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`,
				map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + caller.token})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: a small request of %s: %s %s", when, caller.ws, resp.Status, body)
			}
		}
	}

	// Bodies in team-a's workspace, where the intruder has no rights: refused once the model
	// has arrived, while the rest of the body is still on its way.
	pad := strings.Repeat("x", 256<<10)
	var denied []*stalledBody
	for _, token := range intruders {
		for _, head := range []string{`{"model":"llama","messages":[{"role":"user","content":"` + pad, `{"messages":[],"model":"llama",` + `"x":"` + pad} {
			denied = append(denied, sendPartly(t, g.url, gateway.Prefix+"team-a/openai/-/v1/chat/completions", token, bodySize, head))
		}
	}
	for i, s := range denied {
		if resp := s.answer(t); resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("stalled body %d without rights: %v, want 403 before the body ends", i, resp)
		}
	}
	smallRequestsPass("beside bodies refused for their model")

	// Bodies in its own workspace whose model comes last: held as they arrive, the
	// namespace's share at most. Its requests past the share get 429; the others' pass.
	buffered := func(want func(float64) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			n := counter(t, g.reg, "infergate_gateway_buffered_bytes", nil)
			if want(n) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the gateway holds %.0f bytes", n)
			}
		}
	}
	buffered(func(n float64) bool { return n == 0 })
	body := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 768<<10)
	path := gateway.Prefix + "intruder/openai/-/v1/chat/completions"
	// 768 KiB arrived: 1 MiB held for each of two ServiceAccounts of the namespace, its share.
	sendPartly(t, g.url, path, intruders[0], bodySize, body)
	buffered(func(n float64) bool { return n >= 1<<20 })
	sendPartly(t, g.url, path, intruders[1], bodySize, body)
	buffered(func(n float64) bool { return n >= 2<<20 })
	for i, token := range []string{intruders[2], intruders[0]} {
		resp := sendPartly(t, g.url, path, token, bodySize, body).answer(t)
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("body %d past the namespace's share: %v, want 429 with Retry-After", i, resp)
		}
	}
	if n := counter(t, g.reg, "infergate_gateway_buffered_bytes", nil); n > share {
		t.Errorf("the gateway holds %.0f bytes for one namespace, more than its share of %d", n, share)
	}
	smallRequestsPass("beside the bodies of a namespace that took its share")
}
