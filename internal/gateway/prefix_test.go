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
	"testing"

	"github.com/infergate/infergate/internal/jsonfield"
)

func key(t *testing.T, body string) uint64 {
	t.Helper()
	members, err := jsonfield.Members(nil, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return prefixKey([]byte(body), members)
}

func TestPrefixKey(t *testing.T) {
	const sys = `{"role":"system","content":"You are a bakery's assistant."}`
	turn1 := key(t, `{"model":"m","messages":[`+sys+`,{"role":"user","content":"When do you open?"}]}`)
	turn2 := key(t, `{"model":"m","stream":true,"messages":[`+sys+`,{"role":"user","content":"When do you open?"},{"role":"assistant","content":"At 7."},{"role":"user","content":"And on Sunday?"}]}`)
	other := key(t, `{"model":"m","messages":[`+sys+`,{"role":"user","content":"Do you sell rye?"}]}`)
	if turn1 == 0 || turn1 != turn2 {
		t.Errorf("the turns of a conversation have keys %x and %x, want one", turn1, turn2)
	}
	if other == turn1 {
		t.Error("another conversation with the same system prompt has the same key")
	}
	// The Responses API: instructions and the opening input items; completions: the prompt's start.
	r1 := key(t, `{"model":"m","instructions":"Be brief.","input":[{"role":"user","content":"hi"}]}`)
	r2 := key(t, `{"model":"m","instructions":"Be brief.","input":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}`)
	if r1 == 0 || r1 != r2 {
		t.Errorf("responses turns: %x and %x", r1, r2)
	}
	long := make([]byte, 2*prefixStringBytes)
	for i := range long {
		long[i] = 'a'
	}
	p1 := key(t, `{"model":"m","prompt":"`+string(long)+`b"}`)
	p2 := key(t, `{"model":"m","prompt":"`+string(long)+`c"}`)
	if p1 == 0 || p1 != p2 {
		t.Error("prompts that share their first 512 bytes have different keys")
	}
	if k := key(t, `{"model":"m","max_tokens":5}`); k != 0 {
		t.Errorf("a body without a prompt has key %x", k)
	}
	// At most prefixMessages messages count, whatever their roles.
	var many []byte
	for range 2 * prefixMessages {
		many = append(many, `{"role":"system","content":"s"},`...)
	}
	a := key(t, `{"messages":[`+string(many)+`{"role":"user","content":"a"}]}`)
	b := key(t, `{"messages":[`+string(many)+`{"role":"user","content":"b"}]}`)
	if a != b {
		t.Error("messages past the first 16 change the key")
	}
}

func BenchmarkPrefixKey(b *testing.B) {
	body := []byte(`{"model":"m","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant who answers questions about Kubernetes operators, their controllers and their custom resources."},` +
		`{"role":"user","content":"How do I write a reconciler?"},{"role":"assistant","content":"Start with controller-runtime."},{"role":"user","content":"And tests?"}]}`)
	members, err := jsonfield.Members(nil, body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		prefixKey(body, members)
	}
}
