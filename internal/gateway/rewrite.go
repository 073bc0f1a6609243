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
	"bytes"

	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/routing"
)

var (
	openBrace  = []byte("{")
	closeBrace = []byte("}")
	comma      = []byte(",")
	modelKey   = []byte(`"model":`)
)

// requestBody plans the upstream body of one attempt: the client's JSON object with `model` set
// to the backend's served name and the provider's extra fields merged in (defaults when absent,
// required always). The result points into body; nothing is copied.
//
// model is the index in members of the `model` member, or -1; with setModel false the model is
// left as it is (provider route). The request's own overrides (its output cap lowered to its
// budget, the stream's usage asked for) replace members of the same name, the provider's
// required fields included.
func requestBody(dst [][]byte, body []byte, members []jsonfield.Member, model int, setModel bool, served []byte, p *routing.Provider, overrides []routing.BodyField) [][]byte {
	if len(p.DefaultBody) == 0 && len(p.RequiredBody) == 0 && len(overrides) == 0 {
		switch {
		case !setModel:
			return append(dst, body)
		case model >= 0:
			m := members[model]
			return append(dst, body[:m.ValueStart], served, body[m.ValueEnd:])
		}
	}
	// Rebuild the object member by member.
	dst = append(dst, openBrace)
	first := true
	add := func(segs ...[]byte) {
		if !first {
			dst = append(dst, comma)
		}
		first = false
		dst = append(dst, segs...)
	}
	if setModel && model < 0 {
		add(modelKey, served)
	}
	for i, m := range members {
		if required(body, m, p.RequiredBody) || required(body, m, overrides) {
			continue
		}
		if setModel && i == model {
			add(body[m.KeyStart:m.ValueStart], served)
			continue
		}
		add(body[m.KeyStart:m.ValueEnd])
	}
	for _, f := range p.DefaultBody {
		if present(body, members, f.Name) || isRequired(f.Name, p.RequiredBody) || isRequired(f.Name, overrides) {
			continue
		}
		add(f.Member)
	}
	for _, f := range p.RequiredBody {
		if !isRequired(f.Name, overrides) {
			add(f.Member)
		}
	}
	for _, f := range overrides {
		add(f.Member)
	}
	return append(dst, closeBrace)
}

func required(body []byte, m jsonfield.Member, fields []routing.BodyField) bool {
	for _, f := range fields {
		if m.KeyIs(body, f.Name) {
			return true
		}
	}
	return false
}

func isRequired(name string, fields []routing.BodyField) bool {
	for _, f := range fields {
		if f.Name == name {
			return true
		}
	}
	return false
}

func present(body []byte, members []jsonfield.Member, name string) bool {
	for _, m := range members {
		if m.KeyIs(body, name) {
			return true
		}
	}
	return false
}

// usage is the token count of a response.
type usage struct {
	prompt, completion int64
	seen               bool
}

// responseRewriter rewrites the served model name back to the entity id in response JSON and
// reads usage. Its scratch slices are reused across calls.
type responseRewriter struct {
	served  []byte // the served name, unquoted
	any     bool   // rewrite every model, whatever it names (a virtual model's response)
	id      []byte // the entity id as a JSON string
	members []jsonfield.Member
	nested  []jsonfield.Member
	spans   [3][2]int
}

// rewrite returns the segments of doc with each `model`, `response.model` and `message.model`
// that equals the served name replaced by the entity id, and the usage the document reports
// (top-level `usage` or `response.usage`). A document that is not a JSON object is returned as
// it is.
func (rw *responseRewriter) rewrite(dst [][]byte, doc []byte) ([][]byte, usage) {
	var u usage
	var err error
	rw.members, err = jsonfield.Members(rw.members[:0], doc)
	if err != nil {
		return append(dst, doc), u
	}
	spans := rw.spans[:0]
	for _, m := range rw.members {
		switch {
		case m.KeyIs(doc, "model"):
			if rw.isServed(m.Value(doc)) {
				spans = append(spans, [2]int{m.ValueStart, m.ValueEnd})
			}
		case m.KeyIs(doc, "usage"):
			rw.readUsage(doc[m.ValueStart:m.ValueEnd], &u)
		case m.KeyIs(doc, "response"), m.KeyIs(doc, "message"):
			v := m.Value(doc)
			if len(v) == 0 || v[0] != '{' {
				continue
			}
			rw.nested, err = jsonfield.Members(rw.nested[:0], v)
			if err != nil {
				continue
			}
			for _, n := range rw.nested {
				if n.KeyIs(v, "model") && rw.isServed(n.Value(v)) && len(spans) < cap(rw.spans) {
					spans = append(spans, [2]int{m.ValueStart + n.ValueStart, m.ValueStart + n.ValueEnd})
				}
			}
			// Responses API events carry usage inside the response object.
			if m.KeyIs(doc, "response") {
				if nu, ok := jsonfield.Find(v, rw.nested, "usage"); ok {
					rw.readUsage(nu.Value(v), &u)
				}
			}
		}
		if len(spans) == cap(rw.spans) {
			break
		}
	}
	if len(spans) == 0 {
		return append(dst, doc), u
	}
	// Spans come in document order: members are visited in order and nested ones lie inside
	// their parent.
	pos := 0
	for _, s := range spans {
		dst = append(dst, doc[pos:s[0]], rw.id)
		pos = s[1]
	}
	return append(dst, doc[pos:]), u
}

// isServed tells whether v is the served name as a JSON string, or any string for a virtual
// model, whose targets' APIs may answer with a dated or versioned id (gpt-4o-2024-08-06 for
// gpt-4o) that must not show through; never on the provider route, which has no served name
// and rewrites nothing.
func (rw *responseRewriter) isServed(v []byte) bool {
	if len(rw.served) == 0 {
		return false
	}
	s, ok := jsonfield.StringValue(v)
	return ok && (rw.any || bytes.Equal(s, rw.served))
}

// readUsage reads prompt and completion tokens (or the Responses API's input and output
// tokens) from a usage object.
func (rw *responseRewriter) readUsage(v []byte, u *usage) {
	if len(v) == 0 || v[0] != '{' {
		return
	}
	members, err := jsonfield.Members(rw.nested[:0], v)
	rw.nested = members
	if err != nil {
		return
	}
	for _, m := range members {
		switch {
		case m.KeyIs(v, "prompt_tokens"), m.KeyIs(v, "input_tokens"):
			if n, ok := jsonfield.IntValue(m.Value(v)); ok {
				u.prompt, u.seen = n, true
			}
		case m.KeyIs(v, "completion_tokens"), m.KeyIs(v, "output_tokens"):
			if n, ok := jsonfield.IntValue(m.Value(v)); ok {
				u.completion, u.seen = n, true
			}
		}
	}
}
