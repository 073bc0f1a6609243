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
	"net/http"
	"time"
)

// The access log, when Options.AccessLog is set: one line per request at the info level of
// the gateway's logger, named "access". It says who called what, where it went and how it
// went; never keys, tokens or bodies.

// accessEntry is what a line says besides the request itself.
type accessEntry struct {
	requestID                   string
	workspace, entity, provider string
	target                      string // the target of a virtual model that answered
	status, attempts            int
	ttft                        time.Duration // streams: until the first event; 0 otherwise
	usage                       *usage
}

type startKey struct{}

// withStart records when the request arrived, for the lines of requests answered before
// proxying; it runs only when the access log is on.
func withStart(r *http.Request, now time.Time) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), startKey{}, now))
}

// logAccess writes the line of a request that arrived at start (zero: as withStart recorded).
func (g *Gateway) logAccess(r *http.Request, start time.Time, e accessEntry) {
	if start.IsZero() {
		start, _ = r.Context().Value(startKey{}).(time.Time)
	}
	kv := make([]any, 0, 30)
	kv = append(kv, "requestID", e.requestID, "method", r.Method, "path", r.URL.Path, "workspace", e.workspace)
	if e.entity != "" {
		kv = append(kv, "entity", e.entity)
	}
	if e.target != "" {
		kv = append(kv, "target", e.target)
	}
	if e.provider != "" {
		kv = append(kv, "provider", e.provider, "attempts", e.attempts)
	}
	kv = append(kv, "status", e.status, "duration", g.opts.Now().Sub(start).String())
	if e.ttft > 0 {
		kv = append(kv, "ttft", e.ttft.String())
	}
	if u := e.usage; u != nil && u.seen {
		kv = append(kv, "promptTokens", u.prompt, "completionTokens", u.completion)
	}
	if u := userFrom(r.Context()); u != nil {
		kv = append(kv, "user", u.GetName())
	}
	g.access.Info("request", kv...)
}
