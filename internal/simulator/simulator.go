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
// It can behave like a GPU server running vLLM (see Options.MaxNumSeqs and what follows): a
// bounded batch with a waiting queue, prefill time for the prompt tokens its prefix cache does
// not hold, decode steps that slow as the batch grows, vLLM's metrics on /metrics and
// usage.prompt_tokens_details.cached_tokens in answers.
//
// Per-request behaviour can be chosen with headers, which pass through the gateway:
//
//	X-Sim-Status: 503          answer with this status and an OpenAI error body
//	X-Sim-Retry-After: 2       with X-Sim-Status, send Retry-After
//	X-Sim-Chunks: 20           number of tokens (content chunks of a stream) to generate
//	X-Sim-Chunk-Delay: 50ms    time of each decode step (pause before each chunk)
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

	// The engine model, a vLLM server in miniature (see engine). The zero values give a server
	// with no queue, no prefill time and no prefix cache.

	// MaxNumSeqs bounds the sequences that run at once; the others wait. 0: no bound.
	MaxNumSeqs int
	// PrefillTimePerToken is the prefill time of each prompt token the prefix cache does not
	// hold. Prompts are prefilled one at a time, and the prefill yields the first token: with
	// it, ChunkDelay paces the tokens after the first.
	PrefillTimePerToken time.Duration
	// DecodeTimePerSeq is added to each decode step (ChunkDelay) for every other running
	// sequence: the batch slows every step.
	DecodeTimePerSeq time.Duration
	// KVCacheBlocks is the number of KV cache blocks; it enables the prefix cache, and
	// sequences wait while their blocks do not fit. 0: no prefix cache.
	KVCacheBlocks int
	// BlockSize is the number of tokens per block. Default 16.
	BlockSize int
	// MaxModelLen bounds the prompt's tokens plus the output asked for, as vLLM's
	// --max-model-len: a request past it is answered 400 with vLLM's message. 0: no bound.
	MaxModelLen int
}

// Request is a request as the simulator received it.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// Server is the simulator's http.Handler.
type Server struct {
	opts    Options
	engine  *engine
	metrics *metrics
	apiKey  atomic.Pointer[string]
	status  atomic.Int32
	served  atomic.Int64
	ids     atomic.Int64

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
	s := &Server{opts: opts, engine: newEngine(opts)}
	s.metrics = newMetrics(s.engine, opts.Models[0])
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
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	Input               json.RawMessage `json:"input"`
	Encoding            string          `json:"encoding_format"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// maxTokens is the request's bound on output tokens, 0 when it sets none.
func (r *chatRequest) maxTokens() int {
	if r.MaxCompletionTokens > 0 {
		return r.MaxCompletionTokens
	}
	return r.MaxTokens
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
	case "/metrics":
		s.metrics.handler.ServeHTTP(w, r)
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
	switch path {
	case "/v1/chat/completions", "/v1/completions":
		s.generate(w, r, &req, path == "/v1/chat/completions")
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
	PromptTokens        int                  `json:"prompt_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	PromptTokensDetails *promptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// promptTokensDetails tells how much of the prompt the prefix cache held, as vLLM reports it.
type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

func (u *usage) cached() int {
	if u.PromptTokensDetails == nil {
		return 0
	}
	return u.PromptTokensDetails.CachedTokens
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

// generate answers a chat completion or a completion through the engine: it waits its turn,
// prefills what the prefix cache does not hold, then writes tokens as they are decoded, as SSE
// events when the request streams.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, req *chatRequest, chat bool) {
	start := time.Now()
	n := s.opts.Chunks
	if v := r.Header.Get("X-Sim-Chunks"); v != "" {
		if c, err := strconv.Atoi(v); err == nil && c > 0 {
			n = c
		}
	}
	finish := "stop"
	if m := req.maxTokens(); m > 0 && m < n {
		n, finish = m, "length"
	}
	text := promptText(req)
	if limit := s.opts.MaxModelLen; limit > 0 && promptTokens(text)+n > limit {
		writeError(w, http.StatusBadRequest, "BadRequestError", "", fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). "+
			"Please reduce the length of the messages or completion.", limit, promptTokens(text)+n, promptTokens(text), n))
		return
	}
	seq, err := s.engine.newSequence(text, n)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", err.Error())
		return
	}
	out := &tokenWriter{s: s, w: w, req: req, chat: chat, stream: req.Stream, created: time.Now().Unix()}
	out.object, out.id = "text_completion", s.id("cmpl-sim-")
	if chat {
		out.object, out.id = "chat.completion", s.id("chatcmpl-sim-")
	}
	if req.Stream {
		out.begin() // the response starts at once; tokens follow as they come
	}

	ctx := r.Context()
	if err := s.engine.admit(ctx, seq); err != nil {
		return // the client went away while queued
	}
	defer s.engine.finish(seq)
	prompt := promptTokens(text)
	u := usage{PromptTokens: prompt, CompletionTokens: n, TotalTokens: prompt + n}
	s.metrics.promptTokens.Add(float64(prompt))
	if s.engine.cache != nil {
		cached := min(seq.hits*s.engine.blockSize, prompt-1)
		u.PromptTokensDetails = &promptTokensDetails{CachedTokens: cached}
		s.metrics.cacheQueries.Add(float64(prompt))
		s.metrics.cacheHits.Add(float64(cached))
	}
	if err := s.engine.prefillFor(ctx, prompt-u.cached()); err != nil {
		return
	}
	itl := durationHeader(r, "X-Sim-Chunk-Delay", s.opts.ChunkDelay)
	for i := range n {
		// With a prefill time, the prefill's forward pass yields the first token, as a GPU
		// server's does; every other token takes a decode step.
		if i > 0 || s.engine.prefillPerTok <= 0 {
			if err := pause(ctx, s.engine.step(itl)); err != nil {
				return
			}
		}
		if i == 0 {
			s.metrics.ttft.Observe(time.Since(start).Seconds())
		}
		s.metrics.generationTokens.Inc()
		var reason *string
		if i == n-1 {
			reason = &finish
		}
		if !out.token(i, reason) {
			return
		}
	}
	out.end(&u, s.text(n), finish)
	s.metrics.succeeded.Inc()
	s.metrics.e2e.Observe(time.Since(start).Seconds())
}

// tokenWriter writes a generation: SSE chunks as tokens come, or one JSON document at the end.
type tokenWriter struct {
	s            *Server
	w            http.ResponseWriter
	req          *chatRequest
	chat, stream bool
	object, id   string
	created      int64
	seq          int
}

func (t *tokenWriter) begin() {
	t.w.Header().Set("Content-Type", "text/event-stream")
	t.w.Header().Set("Cache-Control", "no-cache")
	t.w.WriteHeader(http.StatusOK)
	if t.s.opts.SSEExtras {
		_, _ = io.WriteString(t.w, ": simulator stream\n\n")
	}
	t.flush()
}

func (t *tokenWriter) flush() {
	if f, ok := t.w.(http.Flusher); ok {
		f.Flush()
	}
}

// token writes the i-th token when streaming.
func (t *tokenWriter) token(i int, finish *string) bool {
	if !t.stream {
		return true
	}
	word := t.s.word(i)
	c := completion{ID: t.id, Object: t.object + ".chunk", Created: t.created, Model: t.req.Model}
	if !t.chat {
		c.Object = t.object
	}
	if t.chat {
		delta := &message{Content: word}
		if i == 0 {
			delta.Role = "assistant"
		}
		c.Choices = []choice{{Delta: delta, FinishReason: finish}}
	} else {
		c.Choices = []choice{{Text: &word, FinishReason: finish}}
	}
	return t.send(c)
}

func (t *tokenWriter) send(c completion) bool {
	data, _ := json.Marshal(c)
	var frame []byte
	if t.s.opts.SSEExtras {
		frame = append(frame, "id: "+strconv.Itoa(t.seq)+"\nevent: chunk\n"...)
	}
	t.seq++
	frame = append(frame, "data: "...)
	frame = append(frame, data...)
	frame = append(frame, "\n\n"...)
	if _, err := t.w.Write(frame); err != nil {
		return false
	}
	t.flush()
	return true
}

// end writes the usage (streams: when asked with stream_options.include_usage) and closes the
// stream, or writes the whole answer.
func (t *tokenWriter) end(u *usage, text, finish string) {
	if !t.stream {
		c := completion{ID: t.id, Object: t.object, Created: t.created, Model: t.req.Model, Usage: u}
		if t.chat {
			c.Choices = []choice{{Message: &message{Role: "assistant", Content: text}, FinishReason: &finish}}
		} else {
			c.Choices = []choice{{Text: &text, FinishReason: &finish}}
		}
		writeJSON(t.w, http.StatusOK, c)
		return
	}
	if t.req.StreamOptions != nil && t.req.StreamOptions.IncludeUsage {
		c := completion{ID: t.id, Object: t.object + ".chunk", Created: t.created, Model: t.req.Model, Choices: []choice{}, Usage: u}
		if !t.chat {
			c.Object = t.object
		}
		if !t.send(c) {
			return
		}
	}
	_, _ = io.WriteString(t.w, "data: [DONE]\n\n")
	t.flush()
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
