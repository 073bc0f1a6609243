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

package jsonfield

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestMembers(t *testing.T) {
	data := []byte(` { "model" : "meta/llama", "messages":[{"role":"user","content":"a \"quoted\" }"}],
		"n":-1.5e+3, "stream":true, "x":null, "o":{"model":"inner"}, "m\u006fdel2": [] } `)
	members, err := Members(nil, data)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range members {
		keys = append(keys, string(m.Key(data))+"="+string(m.Value(data)))
	}
	want := []string{`model="meta/llama"`, `messages=[{"role":"user","content":"a \"quoted\" }"}]`, `n=-1.5e+3`, `stream=true`, `x=null`, `o={"model":"inner"}`, `m\u006fdel2=[]`}
	if strings.Join(keys, "|") != strings.Join(want, "|") {
		t.Errorf("members\n got %q\nwant %q", keys, want)
	}
	m, ok := Find(data, members, "model")
	if !ok || string(m.Value(data)) != `"meta/llama"` {
		t.Errorf("Find(model) = %v %q", ok, m.Value(data))
	}
	if m, ok := Find(data, members, "model2"); !ok || string(m.Value(data)) != "[]" {
		t.Errorf("escaped key not found: %v %q", ok, m.Value(data))
	}
}

func TestMembersRefusesWhatIsNotAnObject(t *testing.T) {
	tests := []struct {
		in      string
		notObj  bool
		syntax  bool
		message string
	}{
		{in: ``, syntax: true, message: "unexpected end"},
		{in: `[1,2]`, notObj: true},
		{in: `"model"`, notObj: true},
		{in: `{"model":"a",}`, syntax: true},
		{in: `{"model":"a"} x`, syntax: true, message: "after top-level value"},
		{in: `{"model":'a'}`, syntax: true},
		{in: `{"model":01}`, syntax: true},
		{in: `{"a":"\x"}`, syntax: true, message: "invalid escape"},
		{in: "{\"a\":\"\n\"}", syntax: true, message: "control character"},
		{in: `{"a":tru}`, syntax: true},
		{in: `{"a":[1,]}`, syntax: true},
		{in: `{"a" 1}`, syntax: true},
		{in: `{"a":1`, syntax: true},
		{in: `model=a`, syntax: true},
	}
	for _, tt := range tests {
		_, err := Members(nil, []byte(tt.in))
		var se *SyntaxError
		switch {
		case tt.notObj && !errors.Is(err, ErrNotObject):
			t.Errorf("%q: err %v, want ErrNotObject", tt.in, err)
		case tt.syntax && !errors.As(err, &se):
			t.Errorf("%q: err %v, want a SyntaxError", tt.in, err)
		case tt.message != "" && (err == nil || !strings.Contains(err.Error(), tt.message)):
			t.Errorf("%q: err %v, want it to say %q", tt.in, err, tt.message)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if _, err := Members(nil, []byte(`{"a":`+deep+`}`)); err == nil {
		t.Error("accepted nesting beyond the limit")
	}
}

func TestStringAndIntValues(t *testing.T) {
	if s, ok := StringValue([]byte(`"meta\/llama"`)); !ok || string(s) != "meta/llama" {
		t.Errorf("StringValue escaped = %q %v", s, ok)
	}
	if s, ok := StringValue([]byte(`"plain"`)); !ok || string(s) != "plain" {
		t.Errorf("StringValue plain = %q %v", s, ok)
	}
	if _, ok := StringValue([]byte(`12`)); ok {
		t.Error("StringValue accepted a number")
	}
	if n, ok := IntValue([]byte("1234")); !ok || n != 1234 {
		t.Errorf("IntValue = %d %v", n, ok)
	}
	for _, bad := range []string{"", "-1", "1.5", "1e3", "12345678901234567890"} {
		if _, ok := IntValue([]byte(bad)); ok {
			t.Errorf("IntValue(%q) accepted", bad)
		}
	}
}

func TestMembersAllocatesNothingWithCapacity(t *testing.T) {
	data := []byte(`{"model":"meta/llama","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	dst := make([]Member, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Members(dst[:0], data); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Members allocated %.0f times", allocs)
	}
}

// FuzzMembers checks Members against encoding/json: it accepts exactly the valid JSON objects,
// and the members it reports are the ones encoding/json decodes.
func FuzzMembers(f *testing.F) {
	for _, seed := range []string{
		`{"model":"ws/llama","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		`{"model":"a\u00e9\"b","n":[1,-2.5e-3,true,false,null,{}],"o":{"p":[[]]}}`,
		`{"a":1,"a":2}`, `[]`, `"x"`, `{`, `{"a":}`, `{"a":1}}`, ` {} `, `{"\ud800":0}`,
		"{\"a\":\"\xff\"}", `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":00}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		members, err := Members(nil, data)
		trimmed := bytes.TrimLeft(data, " \t\r\n")
		wantObject := json.Valid(data) && len(trimmed) > 0 && trimmed[0] == '{'
		if (err == nil) != wantObject {
			t.Fatalf("Members(%q) err = %v; encoding/json says valid object = %v", data, err, wantObject)
		}
		if err != nil {
			return
		}
		var decoded map[string]json.RawMessage
		if err := json.Unmarshal(data, &decoded); err != nil {
			t.Fatalf("encoding/json cannot decode %q: %v", data, err)
		}
		last := map[string][]byte{}
		for _, m := range members {
			key, ok := unquote(data[m.KeyStart:m.KeyEnd])
			if !ok {
				t.Fatalf("key %q does not unquote", data[m.KeyStart:m.KeyEnd])
			}
			last[key] = m.Value(data)
		}
		if len(last) != len(decoded) {
			t.Fatalf("%d distinct keys, encoding/json decoded %d", len(last), len(decoded))
		}
		for k, v := range decoded {
			if !bytes.Equal(last[k], v) {
				t.Fatalf("key %q: value %q, encoding/json %q", k, last[k], v)
			}
		}
	})
}

func BenchmarkMembers(b *testing.B) {
	data := []byte(`{"model":"team/llama","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one sentence about Kubernetes operators."}],"max_tokens":64,"stream":false}`)
	dst := make([]Member, 0, 8)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Members(dst[:0], data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestElementsAndField(t *testing.T) {
	arr := []byte(` [ {"role":"system","content":"be brief"}, {"role" : "user", "content":"hi", "role":"tool"} ,"x", [1,2] ] `)
	var got []string
	for e := range Elements(arr) {
		got = append(got, string(e))
	}
	want := []string{`{"role":"system","content":"be brief"}`, `{"role" : "user", "content":"hi", "role":"tool"}`, `"x"`, `[1,2]`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Elements = %q, want %q", got, want)
	}
	if v, ok := Field([]byte(want[0]), "role"); !ok || string(v) != `"system"` {
		t.Errorf("Field role = %s, %v", v, ok)
	}
	// The last member of a name counts, as in encoding/json.
	if v, ok := Field([]byte(want[1]), "role"); !ok || string(v) != `"tool"` {
		t.Errorf("Field of a repeated name = %s, %v", v, ok)
	}
	if _, ok := Field([]byte(`"x"`), "role"); ok {
		t.Error("Field of a string")
	}
	for range Elements([]byte(`{"a":1}`)) {
		t.Error("Elements of an object yields something")
	}
	n := 0
	for range Elements([]byte(`[1, 2, ]`)) {
		n++
	}
	if n != 2 {
		t.Errorf("Elements of a broken array yielded %d, want the 2 before the error", n)
	}
}
