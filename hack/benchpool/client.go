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
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// outcome is what the client saw of one request.
type outcome struct {
	sent     time.Duration // since the phase began
	ttft     time.Duration // to the first content event
	e2e      time.Duration // to the end of the stream
	tokens   int
	prompt   int
	cached   int
	reply    string
	err      error
	deferred bool // sent late: the conversation's previous turn was still running
}

// stream sends one streaming chat request and reads it to the end, counting each token that
// arrives inside the measured window into window.
func stream(ctx context.Context, c *http.Client, url string, header http.Header, payload []byte, onToken func()) outcome {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return outcome{err: fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))}
	}
	var o outcome
	var reply strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok || bytes.Equal(data, []byte("[DONE]")) {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				PromptTokens        int `json:"prompt_tokens"`
				CompletionTokens    int `json:"completion_tokens"`
				PromptTokensDetails *struct {
					CachedTokens int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(data, &chunk); err != nil {
			return outcome{err: fmt.Errorf("event %q: %w", data, err)}
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			if o.tokens == 0 {
				o.ttft = time.Since(start)
			}
			o.tokens++
			reply.WriteString(chunk.Choices[0].Delta.Content)
			onToken()
		}
		if u := chunk.Usage; u != nil {
			o.prompt = u.PromptTokens
			if u.PromptTokensDetails != nil {
				o.cached = u.PromptTokensDetails.CachedTokens
			}
		}
	}
	if err := sc.Err(); err != nil {
		return outcome{err: err}
	}
	if o.tokens == 0 {
		return outcome{err: fmt.Errorf("a stream without tokens")}
	}
	o.e2e, o.reply = time.Since(start), reply.String()
	return o
}
