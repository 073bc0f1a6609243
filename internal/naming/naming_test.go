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

package naming

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"ab", true},
		{"llama", true},
		{"meta-llama-3-3-70b-instruct", true},
		{"m-01-ai-yi-large", true},
		{"a" + strings.Repeat("b", 62), true},
		{"", false},
		{"a", false},
		{"a" + strings.Repeat("b", 63), false},
		{"1model", false},
		{"-model", false},
		{"model-", false},
		{"x--y", false},
		{"llama-3.3-70b", false},
		{"Llama", false},
		{"meta/llama", false},
		{"my_model", false},
		{"modèle", false},
	}
	for _, tt := range tests {
		if got := Valid(tt.name); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		id, want string
	}{
		{"meta/llama-3.2-1b-instruct", "meta-llama-3-2-1b-instruct"},
		{"model:v1.0", "model-v1-0"},
		{"01-ai/yi-large", "m-01-ai-yi-large"},
		{"Meta/Llama-3.3-70B-Instruct", "meta-llama-3-3-70b-instruct"},
		{"--gpt--4o--", "gpt-4o"},
		{"nvidia/llama-3.1-nemotron-70b-instruct", "nvidia-llama-3-1-nemotron-70b-instruct"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.id)
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.id, got, err, tt.want)
		}
	}
}

func TestNormalizeLongIDsStayValidAndDistinct(t *testing.T) {
	a := "vendor/" + strings.Repeat("very-long-model-name-", 5) + "a"
	b := "vendor/" + strings.Repeat("very-long-model-name-", 5) + "b"
	na, err := Normalize(a)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := Normalize(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(na) > MaxLength || !Valid(na) || !Valid(nb) {
		t.Fatalf("normalised names %q, %q break the rule", na, nb)
	}
	if na == nb {
		t.Fatalf("distinct ids %q and %q both became %q", a, b, na)
	}
}

func TestNormalizeRefusesEmptyResult(t *testing.T) {
	for _, id := range []string{"", "///", "é"} {
		if got, err := Normalize(id); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", id, got)
		}
	}
}

func BenchmarkValid(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Valid("meta-llama-3-3-70b-instruct")
	}
}
