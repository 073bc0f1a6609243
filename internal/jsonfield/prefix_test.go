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
	"slices"
	"testing"
)

// Fed a document byte by byte, or in any steps, Prefix returns exactly the members Members
// finds, each once, and each only once a byte after its value has arrived.
func TestPrefixFindsMembersAsTheyArrive(t *testing.T) {
	docs := []string{
		`{}`,
		` { "model" : "team/llama" , "messages":[{"role":"user","content":"a,}\"b"}], "n": 12, "stream": true, "x": null }`,
		`{"n":1234,"f":-0.5e+3,"o":{"a":[1,{"b":"}"}]},"s":"\u00e9\\"}`,
		`{"messages":[],"model":"llama"}`,
	}
	for _, doc := range docs {
		want, err := Members(nil, []byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		for _, step := range []int{1, 2, 7, len(doc)} {
			var p Prefix
			var got []Member
			for n := 0; ; n = min(n+step, len(doc)) {
				before := len(got)
				got = p.Next(got, []byte(doc[:n]))
				for _, m := range got[before:] {
					if m.ValueEnd >= n && n < len(doc) {
						t.Errorf("%s, step %d: member %q returned at %d bytes, before a byte followed its value", doc, step, m.Key([]byte(doc)), n)
					}
				}
				if n == len(doc) {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s, step %d: members %v, want %v", doc, step, got, want)
			}
		}
	}
}

// A number or literal at the very end of what arrived may go on: it is not returned yet.
func TestPrefixWaitsForTheEndOfAValue(t *testing.T) {
	var p Prefix
	if got := p.Next(nil, []byte(`{"n":12`)); len(got) != 0 {
		t.Errorf("a number cut short was returned: %v", got)
	}
	got := p.Next(nil, []byte(`{"n":123,`))
	if len(got) != 1 || string(got[0].Value([]byte(`{"n":123,`))) != "123" {
		t.Errorf("got %v", got)
	}
}

// What is not an object, or stops being JSON, yields nothing more; Members tells why.
func TestPrefixStopsAtWhatIsNotAnObject(t *testing.T) {
	for _, doc := range []string{`[1,2]`, `"model"`, `{"a":1 "b":2}`, `{"a":@}`} {
		var p Prefix
		if got := p.Next(nil, []byte(doc)); len(got) > 1 {
			t.Errorf("%s: %v", doc, got)
		}
	}
}

func TestKeyEqualFold(t *testing.T) {
	doc := []byte(`{"model":1,"Model":2,"MODEL":3,"mod\u0065L":4,"models":5,"modeł":6}`)
	members, err := Members(nil, doc)
	if err != nil {
		t.Fatal(err)
	}
	var folded []int
	for i, m := range members {
		if m.KeyEqualFold(doc, "model") {
			folded = append(folded, i)
		}
	}
	if !slices.Equal(folded, []int{0, 1, 2, 3}) {
		t.Errorf("members matching model in any case: %v", folded)
	}
}
