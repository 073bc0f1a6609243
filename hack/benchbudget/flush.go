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
	"net/http"
	"strconv"
	"time"
)

// flushComplete wraps a gateway so that a response with a Content-Length goes to the client
// as soon as its last byte is written, instead of when the handler returns. The gateway
// settles a request's budget (a second call to the store) after the proxy has written the
// response but before its handler returns, and net/http sends a small response only then: the
// -flush-complete experiment measures what the client would gain if the gateway flushed before
// settling.
func flushComplete(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&flushingWriter{ResponseWriter: w, want: -1}, r)
	})
}

type flushingWriter struct {
	http.ResponseWriter
	written, want int64
}

func (f *flushingWriter) WriteHeader(code int) {
	if n, err := strconv.ParseInt(f.Header().Get("Content-Length"), 10, 64); err == nil {
		f.want = n
	}
	f.ResponseWriter.WriteHeader(code)
}

func (f *flushingWriter) Write(p []byte) (int, error) {
	n, err := f.ResponseWriter.Write(p)
	f.written += int64(n)
	if err == nil && f.want >= 0 && f.written >= f.want {
		f.Flush()
	}
	return n, err
}

// Flush, SetReadDeadline and Unwrap keep what the gateway asks of the server's writer.
func (f *flushingWriter) Flush() { _ = http.NewResponseController(f.ResponseWriter).Flush() }

func (f *flushingWriter) SetReadDeadline(t time.Time) error {
	return http.NewResponseController(f.ResponseWriter).SetReadDeadline(t)
}

func (f *flushingWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }
