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

package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/internal/gateway"
)

// record is what a client saw of one request.
type record struct {
	start   time.Time
	dur     time.Duration
	replica int
	stream  bool
	// status is the HTTP status, 0 when the request failed without one (a transport error),
	// or a stream that broke or ended without its usage.
	status int
	code   string // the error's code, for answers other than 200
	err    string // what went wrong, when status is 0
	// prompt and completion are the usage the client received.
	prompt, completion int64
	// limit is X-Ratelimit-Limit-Tokens: the limit, or a replica's share of it while the
	// budget falls back.
	limit   int64
	clamped bool // the gateway lowered max_tokens (X-Infergate-Budget-Max-Tokens)
}

func (r *record) tokens() int64 { return r.prompt + r.completion }

// Lengths of the requests: each asks for max_tokens in [minCap, maxCap] and would, unbounded,
// produce [minLen, maxLen] tokens (the simulator's X-Sim-Chunks), so that some requests stop
// before their cap, as real ones do, and what the gateway reserved is settled lower.
const (
	minCap, maxCap       = 64, 256
	minLen, maxLen       = 32, 256
	minPrompt, maxPrompt = 200, 600 // bytes of the user message
	system               = "You are a helpful assistant. Answer in one short paragraph."
)

var words = strings.Fields("the budget counts tokens per minute across every replica of the gateway while clients " +
	"stream answers from a pool of model servers and wait for their turn when the limit is reached")

// prompt returns a user message of n bytes or a few more.
func prompt(rng *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}

// drive runs *clients clients of workspace ws until stopAt, spread over the replicas by
// spread (percent), half of them streaming, and returns what they saw. Each client pauses
// -think on average (exponentially distributed) between the end of a request and the next,
// whether it was admitted or refused: refused clients keep asking, as the clients
// that want more than the limit do, rather than wait for Retry-After (which would gather
// them all at the start of the next window). No request starts after stopAt; those in flight
// then are read to their end.
func drive(reps []*replica, ws string, spread []int, stopAt time.Time, salt uint64) []record {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 1024, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	sdk := make([]openai.Client, len(reps))
	for i, r := range reps {
		sdk[i] = openai.NewClient(option.WithBaseURL(r.base(ws)), option.WithAPIKey("bench"), option.WithMaxRetries(0), option.WithHTTPClient(hc))
	}
	assign := assignment(*clients, spread)
	var mu sync.Mutex
	var out []record
	var wg sync.WaitGroup
	for c := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(*seed, salt<<32|uint64(c)))
			rep := assign[c]
			stream := c%2 == 1
			pause := time.Duration(rng.Float64() * 2 * float64(*think)) // spread the first requests
			var mine []record
			for {
				if wait := time.Until(stopAt); pause >= wait {
					break
				}
				time.Sleep(pause)
				r := send(&sdk[rep], rng, stream)
				r.replica = rep
				mine = append(mine, r)
				pause = time.Duration(rng.ExpFloat64() * float64(*think))
			}
			mu.Lock()
			out = append(out, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// assignment gives each client a replica: the first spread[0] percent of the clients the
// first, and so on; streaming and non-streaming clients alternate, so each replica has half of
// each.
func assignment(n int, spread []int) []int {
	out := make([]int, n)
	bound, rep := 0, -1
	for c := range n {
		for c >= bound && rep < len(spread)-1 {
			rep++
			bound += (spread[rep]*n + 50) / 100
		}
		out[c] = rep
	}
	return out
}

// send sends one chat request through the OpenAI SDK, streaming or not, and reads it to its
// end.
func send(client *openai.Client, rng *rand.Rand, stream bool) record {
	capTokens := minCap + rng.IntN(maxCap-minCap+1)
	length := minLen + rng.IntN(maxLen-minLen+1)
	params := openai.ChatCompletionNewParams{
		Model: entity,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage(system),
			openai.UserMessage(prompt(rng, minPrompt+rng.IntN(maxPrompt-minPrompt+1))),
		},
		MaxTokens: openai.Int(int64(capTokens)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var resp *http.Response
	opts := []option.RequestOption{option.WithHeader("X-Sim-Chunks", strconv.Itoa(length)), option.WithResponseInto(&resp)}
	r := record{start: time.Now(), stream: stream}
	var err error
	if stream {
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := client.Chat.Completions.NewStreaming(ctx, params, opts...)
		seen := false
		for s.Next() {
			if u := s.Current().Usage; u.TotalTokens > 0 {
				r.prompt, r.completion, seen = u.PromptTokens, u.CompletionTokens, true
			}
		}
		err = s.Err()
		_ = s.Close()
		if err == nil && !seen {
			err = errors.New("the stream ended without its usage")
		}
	} else {
		var cc *openai.ChatCompletion
		if cc, err = client.Chat.Completions.New(ctx, params, opts...); err == nil {
			r.prompt, r.completion = cc.Usage.PromptTokens, cc.Usage.CompletionTokens
		}
	}
	r.dur = time.Since(r.start)
	var apiErr *openai.Error
	switch {
	case errors.As(err, &apiErr):
		r.status, r.code = apiErr.StatusCode, apiErr.Code
		if apiErr.Response != nil {
			resp = apiErr.Response
		}
	case err != nil:
		r.err = err.Error()
	default:
		r.status = http.StatusOK
	}
	if resp != nil {
		r.limit, _ = strconv.ParseInt(resp.Header.Get("X-Ratelimit-Limit-Tokens"), 10, 64)
		r.clamped = resp.Header.Get(gateway.MaxTokensHeader) != ""
	}
	return r
}
