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

// What an attempt's failure was, and whether it may be retried.

package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/infergate/infergate/internal/routing"
)

// Reasons of failed attempts, as metric labels, besides the status codes.
const (
	reasonConnect = "connect" // no connection was made: the request did not run
	reasonSend    = "send"    // the connection failed while the request was sent: it did not run
	reasonTimeout = "timeout" // no response headers in time
	reasonReset   = "reset"   // the connection failed once the request was sent
)

// failureOf classifies an attempt's error, and tells whether the request provably did not
// run upstream: a failed dial (refused, unreachable, not allowed, timed out connecting), or a
// connection that failed while the request was written, such as a kept-alive one the upstream
// had closed (an upstream does not run a request it has not received whole; bodies that could
// be streamed in are not retried anyway). A kept-alive connection found closed before anything
// was written is retried by the transport itself.
func failureOf(err error) (reason string, safe bool) {
	var op *net.OpError
	if errors.As(err, &op) {
		switch op.Op {
		case "dial":
			return reasonConnect, true
		case "write", "readfrom":
			return reasonSend, true
		}
	}
	if isTimeout(err) {
		return reasonTimeout, false
	}
	return reasonReset, false
}

// retryCondition is the entity opt-in that allows retrying after a failure of this reason.
func retryCondition(reason string) routing.RetryOn {
	switch reason {
	case "502", "504":
		return routing.RetryGatewayError
	case reasonTimeout:
		return routing.RetryTimeout
	case reasonReset:
		return routing.RetryReset
	}
	return 0
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// maxRetryAfter bounds the seconds of a Retry-After an upstream sends, so that no count of
// them overflows a time.Duration.
const maxRetryAfter = 24 * 60 * 60

// parseRetryAfter reads a Retry-After header: seconds (at most a day) or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(min(s, maxRetryAfter)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// mayBeContextLength tells whether an answer of this status may say that the prompt exceeds
// the model's context: servers answer that 400 (OpenAI, vLLM, NIM), some 413 or 422.
func mayBeContextLength(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusUnprocessableEntity
}

// contextLengthWordings are what servers say, in lower case, when a prompt (with the output
// asked for) exceeds the model's context: OpenAI's error code and message ("This model's
// maximum context length is 8192 tokens. However, your messages resulted in ..."), vLLM's
// and NIM's ("This model's maximum context length is ...", "The decoder prompt (length N) is
// longer than the maximum model length of M", "Input prompt (N tokens) is too long and
// exceeds limit of M", max_model_len), TensorRT-LLM's (max_seq_len, maximum sequence length)
// and llama.cpp's ("exceed context window", "exceeded maximum context length").
var contextLengthWordings = []string{
	"context_length_exceeded",
	"maximum context length",
	"maximum model length",
	"max_model_len",
	"too long and exceeds limit",
	"max_seq_len",
	"maximum sequence length",
	"context window",
	"prompt is too long",
}

// maxErrorPeek bounds the bytes of an error answer read to classify it.
const maxErrorPeek = 16 << 10

// contextTooLong reads the start of an error answer, under the stream idle timeout as any
// response body, and tells whether it says the prompt exceeds the model's context; the body is
// left whole for the client either way.
func (pr *proxyRequest) contextTooLong(resp *http.Response) bool {
	buf := make([]byte, maxErrorPeek)
	idle := newIdleTimer(pr.timeouts.StreamIdle, pr.cancel)
	n := 0
	var err error
	for n < len(buf) && err == nil {
		var k int
		k, err = idle.read(resp.Body, buf[n:])
		n += k
	}
	idle.release()
	buf = buf[:n]
	var rest io.Reader = resp.Body
	if err != nil {
		rest = http.NoBody // all of it was read, or the rest cannot be: the client gets what came
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), rest), resp.Body}
	lower := bytes.ToLower(buf)
	for _, w := range contextLengthWordings {
		if bytes.Contains(lower, []byte(w)) {
			return true
		}
	}
	return false
}
