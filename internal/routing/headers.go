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

package routing

import "strings"

// ReservedHeaderPrefix starts the names of the headers the gateway keeps for itself, such as
// the hop header that detects loops (egress.HopHeader).
const ReservedHeaderPrefix = "X-Infergate-"

// reservedHeaders are the headers the gateway sets or removes on every upstream request
// itself, lower case: the request id, trace context, the encoding it can rewrite, and those
// that frame the request on the connection.
var reservedHeaders = []string{
	"x-request-id", "traceparent", "tracestate", "accept-encoding",
	"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
	"keep-alive", "proxy-connection",
}

// ReservedHeader reports whether a Provider may not set the header name on upstream requests
// (as an extra header or as its key's header), because the gateway sets it itself: a Provider
// that replaced the hop header would hide a loop. The Provider CRD refuses these names; the
// routing table drops them from objects stored before that rule, and the gateway writes its
// own headers last.
func ReservedHeader(name string) bool {
	if len(name) >= len(ReservedHeaderPrefix) && strings.EqualFold(name[:len(ReservedHeaderPrefix)], ReservedHeaderPrefix) {
		return true
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}
