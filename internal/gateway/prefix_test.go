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
	"slices"
	"strings"
	"testing"

	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/routing"
)

func blocks(t testing.TB, body string) []uint64 {
	t.Helper()
	members, err := jsonfield.Members(nil, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return promptBlocks(nil, []byte(body), members)
}

// common returns how many leading blocks a and b share.
func common(a, b []uint64) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func TestPromptBlocks(t *testing.T) {
	system := `{"role":"system","content":"` + strings.Repeat("You answer questions about our bakery. ", 100) + `"}` // 3,900 bytes
	q1 := blocks(t, `{"model":"m","messages":[`+system+`,{"role":"user","content":"When do you open?"}]}`)
	q2 := blocks(t, `{"stream":true,"messages":[`+system+`,{"role":"user","content":"Do you sell rye?"}],"model":"m"}`)
	// The messages' text is 3,900 bytes and more: 15 full blocks of 256.
	if len(q1) != 15 || len(q2) != 15 {
		t.Fatalf("%d and %d blocks, want 15", len(q1), len(q2))
	}
	// Same prefix, same blocks, wherever the other members are: the system prompt fills 15
	// blocks, the last of which holds the start of the question.
	if n := common(q1, q2); n != 15 && n != 14 {
		t.Errorf("two questions after one system prompt share %d blocks", n)
	}
	if !slices.Equal(q1, blocks(t, `{"model":"m","messages":[`+system+`,{"role":"user","content":"When do you open?"}]}`)) {
		t.Error("the same prompt gave other blocks")
	}
	// A byte changed changes its block and every block after it, not those before.
	changed := system[:2000] + "#" + system[2001:] // byte 2,001 of the messages: block 7
	c := blocks(t, `{"model":"m","messages":[`+changed+`,{"role":"user","content":"When do you open?"}]}`)
	if n := common(q1, c); n != 7 {
		t.Errorf("a byte changed in block 7: %d blocks in common, want 7", n)
	}
	for k := 7; k < len(c); k++ {
		if c[k] == q1[k] {
			t.Errorf("block %d unchanged after a change before it", k)
		}
	}
	// A conversation's next turn extends its blocks.
	turn2 := blocks(t, `{"model":"m","messages":[`+system+`,{"role":"user","content":"When do you open?"},{"role":"assistant","content":"At 7."},`+
		`{"role":"user","content":"`+strings.Repeat("And on Sunday? ", 40)+`"}]}`)
	if len(turn2) <= len(q1) || common(q1, turn2) < 14 {
		t.Errorf("turn 2: %d blocks, %d in common with turn 1", len(turn2), common(q1, turn2))
	}
	// The Responses API: instructions then input, as one text; completions: the prompt.
	instr := strings.Repeat("Be brief. ", 60)
	r1 := blocks(t, `{"model":"m","instructions":"`+instr+`","input":"hello there"}`)
	r2 := blocks(t, `{"input":[{"role":"user","content":"`+strings.Repeat("x", 300)+`"}],"instructions":"`+instr+`"}`)
	if len(r1) != 2 || common(r1, r2) != 2 {
		t.Errorf("responses: %d blocks, %d in common", len(r1), common(r1, r2))
	}
	if p := blocks(t, `{"model":"m","prompt":"`+strings.Repeat("a", 1000)+`"}`); len(p) != 3 {
		t.Errorf("a completion prompt of 1,002 bytes: %d blocks, want 3", len(p))
	}
	// Nothing to cache: no prompt, or less than a block.
	if b := blocks(t, `{"model":"m","max_tokens":5}`); len(b) != 0 {
		t.Errorf("a body without a prompt: %d blocks", len(b))
	}
	if b := blocks(t, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`); len(b) != 0 {
		t.Errorf("a short prompt: %d blocks", len(b))
	}
	// Bounded.
	huge := blocks(t, `{"prompt":"`+strings.Repeat("a", 2*routing.MaxPrefixBlocks*routing.PrefixBlockBytes)+`"}`)
	if len(huge) != routing.MaxPrefixBlocks {
		t.Errorf("a huge prompt: %d blocks, want %d", len(huge), routing.MaxPrefixBlocks)
	}
}

func BenchmarkPromptBlocks(b *testing.B) {
	// A system prompt of 7 KiB and a question: the shared-system-prompt workload.
	body := []byte(`{"model":"m","stream":true,"messages":[{"role":"system","content":"` + strings.Repeat("You are a helpful assistant who answers questions about Kubernetes. ", 100) +
		`"},{"role":"user","content":"How do I write a reconciler?"}]}`)
	members, err := jsonfield.Members(nil, body)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]uint64, 0, routing.MaxPrefixBlocks)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		dst = promptBlocks(dst, body, members)
	}
}
