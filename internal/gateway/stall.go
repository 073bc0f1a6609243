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
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/infergate/infergate/internal/jsonfield"
)

// errStall is the cancellation cause of an attempt whose stream did not start within its
// target's time to first token.
var errStall = errors.New("no first bytes within the target's timeToFirstToken")

// armStall bounds the wait for a stream's first bytes from a target that sets a time to first
// token, when a target is left to fall back to: the attempt gets a context of its own, which
// a timer cancels. Other attempts go as they are, at no cost.
func (pr *proxyRequest) armStall(req *http.Request) *http.Request {
	t := pr.target
	if t == nil || t.TimeToFirstToken <= 0 || !pr.fallbackLeft() || !pr.replayable || pr.attempts >= pr.g.opts.MaxAttempts || !pr.streams() {
		return req
	}
	ctx, cancel := context.WithCancelCause(pr.ctx)
	pr.stall = time.AfterFunc(t.TimeToFirstToken, func() { cancel(errStall) })
	// The response is read under ctx; it ends with pr.ctx, when the request is over.
	return req.WithContext(ctx)
}

// disarmStall stops the attempt's stall timer once its first bytes came or it failed, and
// tells whether the timer fired first: the attempt stalled, and was cancelled.
func (pr *proxyRequest) disarmStall() bool {
	if pr.stall == nil {
		return false
	}
	fired := !pr.stall.Stop()
	pr.stall = nil
	return fired
}

// streams tells whether the request asks for a stream.
func (pr *proxyRequest) streams() bool {
	if !pr.object {
		return false
	}
	m, ok := jsonfield.Find(pr.body.b, pr.members, "stream")
	return ok && string(m.Value(pr.body.b)) == "true"
}
