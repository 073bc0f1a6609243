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
	"net/url"
	"strings"
)

// Prefix is the path prefix of every workspace-scoped gateway route.
const Prefix = "/apis/inference-gateway/v2/workspaces/"

type routeKind uint8

const (
	routeUnknown routeKind = iota
	routeModelsList
	routeModelsGet
	routeOpenAI
	routeEntity
	routeProvider
	routeProviderReady
)

func (k routeKind) String() string {
	switch k {
	case routeModelsList, routeModelsGet:
		return "models"
	case routeOpenAI:
		return "openai"
	case routeEntity:
		return "model"
	case routeProvider, routeProviderReady:
		return "provider"
	}
	return "unknown"
}

// route is a parsed gateway path. Its strings are substrings of the escaped request path.
type route struct {
	kind      routeKind
	workspace string
	// name is the entity, provider or model named in the path.
	name string
	// trailing is what follows "/-/", escaped, without a leading slash.
	trailing string
}

// parsePath splits an escaped request path into a route. GET-only routes (the model list,
// one model, provider readiness) are recognised only for GET.
func parsePath(method, path string) route {
	rest, ok := strings.CutPrefix(path, Prefix)
	if !ok {
		return route{}
	}
	ws, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return route{}
	}
	r := route{workspace: ws}
	switch {
	case strings.HasPrefix(rest, "openai/-/") || rest == "openai/-":
		r.kind = routeOpenAI
		r.trailing = strings.TrimPrefix(strings.TrimPrefix(rest, "openai/-"), "/")
		if method == "GET" {
			if r.trailing == "v1/models" {
				r.kind = routeModelsList
			} else if name, ok := strings.CutPrefix(r.trailing, "v1/models/"); ok && name != "" {
				r.kind, r.name = routeModelsGet, name
			}
		}
		return r
	case strings.HasPrefix(rest, "model/"):
		name, trailing, ok := splitName(rest[len("model/"):])
		if !ok {
			return route{}
		}
		r.kind, r.name, r.trailing = routeEntity, name, trailing
		return r
	case strings.HasPrefix(rest, "provider/"):
		after := rest[len("provider/"):]
		if name, ok := strings.CutSuffix(after, "/ready"); ok && method == "GET" && !strings.Contains(name, "/-/") {
			r.kind, r.name = routeProviderReady, name
			return r
		}
		name, trailing, ok := splitName(after)
		if !ok {
			return route{}
		}
		r.kind, r.name, r.trailing = routeProvider, name, trailing
		return r
	}
	return route{}
}

// splitName splits "name/-/trailing" or "name/-" at the first "/-" separator. The name may
// contain slashes (it is then refused by the name rule, with 422 rather than 404).
func splitName(s string) (name, trailing string, ok bool) {
	if i := strings.Index(s, "/-/"); i >= 0 {
		return s[:i], s[i+3:], true
	}
	if name, ok := strings.CutSuffix(s, "/-"); ok {
		return name, "", true
	}
	return "", "", false
}

// validWorkspace reports whether ws can be a Kubernetes namespace (an RFC 1123 label).
func validWorkspace(ws string) bool {
	if len(ws) == 0 || len(ws) > 63 {
		return false
	}
	for i := 0; i < len(ws); i++ {
		c := ws[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(ws)-1:
		default:
			return false
		}
	}
	return true
}

// upstreamPath joins a provider's base path and a trailing path, dropping a leading "v1/"
// of the trailing path when the base already ends in "/v1".
func upstreamPath(base string, baseEndsInV1 bool, trailing string) string {
	if baseEndsInV1 {
		if t, ok := strings.CutPrefix(trailing, "v1/"); ok {
			trailing = t
		} else if trailing == "v1" {
			trailing = ""
		}
	}
	if trailing == "" {
		if base == "" {
			return "/"
		}
		return base
	}
	return base + "/" + trailing
}

// escapesBase reports whether an escaped trailing path could leave the provider's base path
// upstream: a "." or ".." segment, escaped (%2e) or not, also between backslashes or escaped
// slashes, which some servers take as separators; or an escape that does not decode.
func escapesBase(trailing string) bool {
	p := trailing
	if strings.IndexByte(p, '%') >= 0 {
		var err error
		if p, err = url.PathUnescape(p); err != nil {
			return true
		}
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' && p[i] != '\\' {
			continue
		}
		if seg := p[start:i]; seg == "." || seg == ".." {
			return true
		}
		start = i + 1
	}
	return false
}
