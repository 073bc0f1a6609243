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

// Package simulator is an OpenAI-compatible model server for tests, benchmarks and the
// quickstart: chat completions, completions and embeddings (JSON or SSE streams), the model
// list, health endpoints, an optional API key, and failures on demand.
//
// Per-request behaviour can be chosen with headers, which pass through the gateway:
//
//	X-Sim-Status: 503          answer with this status and an OpenAI error body
//	X-Sim-Retry-After: 2       with X-Sim-Status, send Retry-After
//	X-Sim-Chunks: 20           number of content chunks in a stream
//	X-Sim-Chunk-Delay: 50ms    pause before each chunk
//	X-Sim-Latency: 10ms        pause before the response headers
package simulator

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a simulator.
type Options struct {
	// Name appears in the generated text, so tests can tell upstreams apart. Default "simulator".
	Name string
	// Models are the served model ids. Default ["sim/model"].
	Models []string
	// APIKey, when set, must arrive as "Authorization: Bearer <key>" or "X-Api-Key: <key>".
	APIKey string
	// Chunks is the number of content chunks of a stream. Default 8.
	Chunks int
	// ChunkDelay is the pause before each chunk of a stream.
	ChunkDelay time.Duration
	// Latency is the pause before response headers.
	Latency time.Duration
	// EmbeddingDims is the length of embedding vectors. Default 16.
	EmbeddingDims int
	// SSEExtras adds an SSE comment, `id:` and `event:` lines to streams, to check that a
	// proxy keeps the framing.
	SSEExtras bool
	// Record keeps every request for Requests.
	Record bool
}

// Request is a request as the simulator received it.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// Server is the simulator's http.Handler.
type Server struct {
	opts   Options
	apiKey atomic.Pointer[string]
	status atomic.Int32
	served atomic.Int64
	ids    atomic.Int64

	mu       sync.Mutex
	requests []Request
}

// New returns a simulator.
func New(opts Options) *Server {
	if opts.Name == "" {
		opts.Name = "simulator"
	}
	if len(opts.Models) == 0 {
		opts.Models = []string{"sim/model"}
	}
	if opts.Chunks <= 0 {
		opts.Chunks = 8
	}
	if opts.EmbeddingDims <= 0 {
		opts.EmbeddingDims = 16
	}
	s := &Server{opts: opts}
	s.apiKey.Store(&opts.APIKey)
	return s
}

// SetAPIKey changes the key the simulator accepts ("" accepts any request).
func (s *Server) SetAPIKey(key string) { s.apiKey.Store(&key) }

// SetStatus makes every following request fail with status (0 restores normal answers).
func (s *Server) SetStatus(status int) { s.status.Store(int32(status)) }

// Served returns the number of requests answered.
func (s *Server) Served() int64 { return s.served.Load() }

// Requests returns the recorded requests (Options.Record).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// LastRequest returns the last recorded request.
func (s *Server) LastRequest() (Request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return Request{}, false
	}
	return s.requests[len(s.requests)-1], true
}

// chatRequest holds the fields of OpenAI requests the simulator looks at.
type chatRequest struct {
	Model         string          `json:"model"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	Input         json.RawMessage `json:"input"`
	Encoding      string          `json:"encoding_format"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.served.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "could not read the body: "+err.Error())
		return
	}
	if s.opts.Record {
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
		s.mu.Unlock()
	}

	path := r.URL.Path
	switch path {
	case "/health", "/v1/health/ready", "/v1/health/live", "/healthz":
		w.WriteHeader(http.StatusOK)
		return
	}
	if key := *s.apiKey.Load(); key != "" && !authorized(r, key) {
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
		return
	}
	if status := s.injectedStatus(r); status != 0 {
		if ra := r.Header.Get("X-Sim-Retry-After"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		writeError(w, status, errorType(status), "", fmt.Sprintf("%s: injected failure %d", s.opts.Name, status))
		return
	}
	latency := durationHeader(r, "X-Sim-Latency", s.opts.Latency)
	if latency > 0 && !sleep(r, latency) {
		return
	}

	switch {
	case r.Method == http.MethodGet && path == "/v1/models":
		s.models(w)
		return
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/v1/models/"):
		id := strings.TrimPrefix(path, "/v1/models/")
		if !slices.Contains(s.opts.Models, id) {
			writeError(w, http.StatusNotFound, "invalid_request_error", "model_not_found", fmt.Sprintf("The model `%s` does not exist.", id))
			return
		}
		writeJSON(w, http.StatusOK, model{ID: id, Object: "model", Created: 1700000000, OwnedBy: s.opts.Name})
		return
	case r.Method != http.MethodPost:
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "unknown route "+r.Method+" "+path)
		return
	}

	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	if !slices.Contains(s.opts.Models, req.Model) {
		writeError(w, http.StatusNotFound, "invalid_request_error", "model_not_found", fmt.Sprintf("The model `%s` does not exist.", req.Model))
		return
	}
	promptTokens := len(body)/4 + 1
	switch path {
	case "/v1/chat/completions":
		if req.Stream {
			s.stream(w, r, req, promptTokens, true)
			return
		}
		s.chat(w, req, promptTokens)
	case "/v1/completions":
		if req.Stream {
			s.stream(w, r, req, promptTokens, false)
			return
		}
		s.completion(w, req, promptTokens)
	case "/v1/embeddings":
		s.embeddings(w, req)
	default:
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "unknown route POST "+path)
	}
}

func authorized(r *http.Request, key string) bool {
	return r.Header.Get("Authorization") == "Bearer "+key || r.Header.Get("X-Api-Key") == key
}

func (s *Server) injectedStatus(r *http.Request) int {
	if v := r.Header.Get("X-Sim-Status"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 400 && n <= 599 {
			return n
		}
	}
	return int(s.status.Load())
}

func errorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

func durationHeader(r *http.Request, name string, def time.Duration) time.Duration {
	if v := r.Header.Get(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// sleep pauses unless the client goes away first.
func sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) models(w http.ResponseWriter) {
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list"}
	for _, id := range s.opts.Models {
		list.Data = append(list.Data, model{ID: id, Object: "model", Created: 1700000000, OwnedBy: s.opts.Name})
	}
	writeJSON(w, http.StatusOK, list)
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type message struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content,omitempty"`
}

type choice struct {
	Index        int      `json:"index"`
	Message      *message `json:"message,omitempty"`
	Delta        *message `json:"delta,omitempty"`
	Text         *string  `json:"text,omitempty"`
	FinishReason *string  `json:"finish_reason"`
}

type completion struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
}

// word returns the i-th word of the generated text.
func (s *Server) word(i int) string {
	if i == 0 {
		return "Hello from " + s.opts.Name + "."
	}
	return " word" + strconv.Itoa(i)
}

func (s *Server) text(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(s.word(i))
	}
	return b.String()
}

func (s *Server) id(prefix string) string { return prefix + strconv.FormatInt(s.ids.Add(1), 10) }

func stop() *string { v := "stop"; return &v }

func (s *Server) chat(w http.ResponseWriter, req chatRequest, prompt int) {
	n := s.opts.Chunks
	writeJSON(w, http.StatusOK, completion{
		ID: s.id("chatcmpl-sim-"), Object: "chat.completion", Created: time.Now().Unix(), Model: req.Model,
		Choices: []choice{{Message: &message{Role: "assistant", Content: s.text(n)}, FinishReason: stop()}},
		Usage:   &usage{PromptTokens: prompt, CompletionTokens: n, TotalTokens: prompt + n},
	})
}

func (s *Server) completion(w http.ResponseWriter, req chatRequest, prompt int) {
	n := s.opts.Chunks
	text := s.text(n)
	writeJSON(w, http.StatusOK, completion{
		ID: s.id("cmpl-sim-"), Object: "text_completion", Created: time.Now().Unix(), Model: req.Model,
		Choices: []choice{{Text: &text, FinishReason: stop()}},
		Usage:   &usage{PromptTokens: prompt, CompletionTokens: n, TotalTokens: prompt + n},
	})
}

// stream writes an SSE stream of chunks, each flushed as it is written.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req chatRequest, prompt int, chat bool) {
	n := s.opts.Chunks
	if v := r.Header.Get("X-Sim-Chunks"); v != "" {
		if c, err := strconv.Atoi(v); err == nil && c > 0 {
			n = c
		}
	}
	delay := durationHeader(r, "X-Sim-Chunk-Delay", s.opts.ChunkDelay)
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if s.opts.SSEExtras {
		_, _ = io.WriteString(w, ": simulator stream\n\n")
	}
	object, id := "text_completion", s.id("cmpl-sim-")
	if chat {
		object, id = "chat.completion.chunk", s.id("chatcmpl-sim-")
	}
	created := time.Now().Unix()
	send := func(seq int, c completion) bool {
		data, _ := json.Marshal(c)
		var frame []byte
		if s.opts.SSEExtras {
			frame = append(frame, "id: "+strconv.Itoa(seq)+"\nevent: chunk\n"...)
		}
		frame = append(frame, "data: "...)
		frame = append(frame, data...)
		frame = append(frame, "\n\n"...)
		if _, err := w.Write(frame); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	for i := 0; i < n; i++ {
		if delay > 0 && !sleep(r, delay) {
			return
		}
		c := completion{ID: id, Object: object, Created: created, Model: req.Model}
		word := s.word(i)
		var finish *string
		if i == n-1 {
			finish = stop()
		}
		if chat {
			delta := &message{Content: word}
			if i == 0 {
				delta.Role = "assistant"
			}
			c.Choices = []choice{{Delta: delta, FinishReason: finish}}
		} else {
			c.Choices = []choice{{Text: &word, FinishReason: finish}}
		}
		if !send(i, c) {
			return
		}
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		c := completion{ID: id, Object: object, Created: created, Model: req.Model, Choices: []choice{},
			Usage: &usage{PromptTokens: prompt, CompletionTokens: n, TotalTokens: prompt + n}}
		if !send(n, c) {
			return
		}
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

func (s *Server) embeddings(w http.ResponseWriter, req chatRequest) {
	var inputs []json.RawMessage
	if len(req.Input) > 0 && req.Input[0] == '[' {
		if err := json.Unmarshal(req.Input, &inputs); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "", "input must be a string or an array")
			return
		}
	} else if len(req.Input) > 0 {
		inputs = []json.RawMessage{req.Input}
	}
	if len(inputs) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "input is required")
		return
	}
	type embedding struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	resp := struct {
		Object string      `json:"object"`
		Data   []embedding `json:"data"`
		Model  string      `json:"model"`
		Usage  usage       `json:"usage"`
	}{Object: "list", Model: req.Model}
	tokens := 0
	for i, in := range inputs {
		tokens += len(in)/4 + 1
		vec := make([]float32, s.opts.EmbeddingDims)
		for j := range vec {
			vec[j] = float32(math.Sin(float64(len(in)*(j+1)+i))) / 2
		}
		var value any = vec
		if req.Encoding == "base64" {
			raw := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			value = base64.StdEncoding.EncodeToString(raw)
		}
		resp.Data = append(resp.Data, embedding{Object: "embedding", Index: i, Embedding: value})
	}
	resp.Usage = usage{PromptTokens: tokens, TotalTokens: tokens}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	e := struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}{}
	e.Error.Message, e.Error.Type = msg, typ
	if code != "" {
		e.Error.Code = &code
	}
	writeJSON(w, status, e)
}
