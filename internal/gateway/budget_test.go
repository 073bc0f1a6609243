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
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

// chatBody is a JSON chat request of about size bytes, produced as it is read, so that the
// clients of a test hold no bodies in memory.
type chatBody struct {
	head, tail string
	pad, off   int
}

func newChatBody(model string, size int) *chatBody {
	head := `{"model":"` + model + `","messages":[{"role":"user","content":"`
	tail := `"}]}`
	return &chatBody{head: head, tail: tail, pad: size - len(head) - len(tail)}
}

func (b *chatBody) len() int { return len(b.head) + b.pad + len(b.tail) }

func (b *chatBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case b.off < len(b.head):
			c := copy(p[n:], b.head[b.off:])
			n, b.off = n+c, b.off+c
		case b.off < len(b.head)+b.pad:
			c := min(len(p)-n, len(b.head)+b.pad-b.off)
			for i := range c {
				p[n+i] = 'x'
			}
			n, b.off = n+c, b.off+c
		case b.off < b.len():
			c := copy(p[n:], b.tail[b.off-len(b.head)-b.pad:])
			n, b.off = n+c, b.off+c
		default:
			return n, io.EOF
		}
	}
	return n, nil
}

// Many clients sending large bodies at once cannot make the gateway hold more than its budget:
// the requests that do not fit get 503 with Retry-After, the others go through, and the heap
// grows with the budget (plus the garbage collector's headroom), not with the sum of the
// bodies.
func TestBufferBudgetBoundsMemory(t *testing.T) {
	const (
		budget  = 32 << 20
		bodyLen = 8 << 20
		clients = 24 // 192 MiB of bodies in all
	)
	var busy atomic.Int32
	slow := newHTTPTestServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		busy.Add(1)
		defer busy.Add(-1)
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(300 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"`+served+`","choices":[]}`)
	}))
	t.Cleanup(slow.Close)
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "slow", slow.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "slow", served))},
	}, gateway.Options{BufferBytes: budget, MaxBodyBytes: 16 << 20})

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()

	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for range clients {
		wg.Go(func() {
			body := newChatBody("llama", bodyLen)
			req, _ := http.NewRequest("POST", g.base("team")+"/openai/-/v1/chat/completions", body)
			req.ContentLength = int64(body.len())
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				ok.Add(1)
			case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "1" && strings.Contains(string(data), `"gateway_busy"`):
				refused.Add(1)
			default:
				t.Errorf("%s: %s", resp.Status, data)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	grew := int64(peak.Load()) - int64(baseline)
	t.Logf("%d of %d requests went through, %d were refused; the heap grew by %.1f MiB at most (budget %d MiB, bodies %d MiB in all)",
		ok.Load(), clients, refused.Load(), float64(grew)/(1<<20), budget>>20, clients*bodyLen>>20)
	if ok.Load() == 0 || refused.Load() == 0 {
		t.Errorf("%d went through and %d were refused: want both", ok.Load(), refused.Load())
	}
	// Three times the budget: a body's buffer doubles as its bytes arrive (so that a client
	// holds only what it sent), and the buffers it outgrew, like the bodies of requests that
	// are done, are garbage until the next collection.
	if limit := int64(3*budget + 16<<20); grew > limit {
		t.Errorf("the heap grew by %d MiB, more than three times the %d MiB budget", grew>>20, budget>>20)
	}
}

// --gateway-max-body-bytes holds on every route, bodies streamed through included.
func TestBodyLimitHoldsOnEveryRoute(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{MaxBodyBytes: 1 << 20})
	for _, tc := range []struct {
		route, contentType string
		chunked            bool
	}{
		{"/provider/nim/-/v1/files", "application/octet-stream", false},
		{"/provider/nim/-/v1/files", "application/octet-stream", true},
		{"/model/llama/-/v1/chat/completions", "application/json", false},
		{"/model/llama/-/v1/chat/completions", "", true},
		{"/openai/-/v1/chat/completions", "application/json", true},
	} {
		body := newChatBody("llama", 2<<20)
		req, _ := http.NewRequest("POST", g.base("team")+tc.route, io.NopCloser(body)) // NopCloser: no length known
		if !tc.chunked {
			req.ContentLength = int64(body.len())
		}
		req.Header.Set("Content-Type", tc.contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s (chunked %v): %v", tc.route, tc.chunked, err)
			continue
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s (chunked %v): %s, want 413: %s", tc.route, tc.chunked, resp.Status, data)
		}
	}
}

// A body that does not arrive within --gateway-body-read-timeout is 408; the deadline is
// lifted once the body is read, so that a response may last longer.
func TestBodyReadTimeout(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}, Chunks: 5, ChunkDelay: 100 * time.Millisecond})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{BodyReadTimeout: 200 * time.Millisecond})

	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST "+gateway.Prefix+"team/openai/-/v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"+
		"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":\"llama\",")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(reply), "HTTP/1.1 408") || !strings.Contains(string(reply), "body_timeout") {
		t.Errorf("a body that stalls: %q", reply)
	}

	// The whole stream takes 500 ms, well past the 200 ms to read the body.
	start := time.Now()
	resp, data := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","stream":true,"messages":[]}`,
		map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 || !strings.Contains(string(data), "[DONE]") || time.Since(start) < 400*time.Millisecond {
		t.Errorf("a stream longer than the body deadline: %s after %s: %s", resp.Status, time.Since(start), data)
	}
}
