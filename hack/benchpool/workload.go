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
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// A workload is a schedule of arrivals, the same for every configuration of a phase.
type workload struct {
	name     string
	arrivals []arrival
	// prefix workloads: conversations per slot and turns per conversation.
	slots, turns int
	// shared system prompts: the applications.
	apps int
	seed uint64
	// independent workloads: each arrival's own prompt; shared system prompts: each
	// arrival's own question.
	prompts []string
	// shared system prompts: each application's system prompt.
	systems []string
}

type arrival struct {
	at   time.Duration // since the phase began
	slot int           // the conversation slot (prefix workload)
	app  int           // the application (shared system prompts)
	// replica splits the traffic of the two-replica configuration.
	replica int
}

// The shape of the requests.
const (
	outputTokens = 64
	// Independent prompts: 2,000 to 6,000 bytes of text, 500 to 1,500 tokens.
	minPromptBytes, maxPromptBytes = 2000, 6000
	// Prefix-heavy: each conversation has its own system prompt of 6,000 bytes (1,500 tokens);
	// each user turn adds 200 bytes.
	systemPromptBytes = 6000
	userTurnBytes     = 200
	// Shared system prompts: each application has its own system prompt of 7,200 bytes
	// (about 1,200 words, 1,800 tokens); each request asks a new question of 150 to 250 bytes.
	appPromptBytes                     = 7200
	minQuestionBytes, maxQuestionBytes = 150, 250
)

// poisson returns arrival times of a Poisson process of rate per second over d.
func poisson(r *rand.Rand, rate float64, d time.Duration) []time.Duration {
	var out []time.Duration
	if rate <= 0 {
		return nil
	}
	for t := 0.0; ; {
		t += r.ExpFloat64() / rate
		at := time.Duration(t * float64(time.Second))
		if at >= d {
			return out
		}
		out = append(out, at)
	}
}

func independent(rate float64, d time.Duration, seed uint64) *workload {
	r := rand.New(rand.NewPCG(seed, 1))
	w := &workload{name: "independent prompts", seed: seed}
	for i, at := range poisson(r, rate, d) {
		w.arrivals = append(w.arrivals, arrival{at: at, replica: r.IntN(2)})
		w.prompts = append(w.prompts, "Request "+strconv.Itoa(i)+": "+words(r, minPromptBytes+r.IntN(maxPromptBytes-minPromptBytes)))
	}
	return w
}

// prefixHeavy spreads the arrivals over slots conversations at random; a conversation lasts
// turns turns, then its slot starts a new one. Slots start part-way through a first
// conversation, so that conversations do not all end together.
func prefixHeavy(rate float64, d time.Duration, slots, turns int, seed uint64) *workload {
	r := rand.New(rand.NewPCG(seed, 2))
	w := &workload{name: "prefix-heavy conversations", slots: slots, turns: turns, seed: seed}
	for _, at := range poisson(r, rate, d) {
		// Each arrival is the next turn of a conversation drawn at random: taking them in
		// turn would line conversations up with round-robin's cycle.
		w.arrivals = append(w.arrivals, arrival{at: at, slot: r.IntN(slots), replica: r.IntN(2)})
	}
	return w
}

// shared spreads the arrivals over apps applications at random. Every request of an
// application carries the application's system prompt and a question of its own; requests are
// independent of one another, sent at their arrival.
func shared(rate float64, d time.Duration, apps int, seed uint64) *workload {
	r := rand.New(rand.NewPCG(seed, 3))
	w := &workload{name: "shared system prompts", apps: apps, seed: seed}
	for app := range apps {
		pr := rand.New(rand.NewPCG(seed, 1<<32+uint64(app)))
		w.systems = append(w.systems, fmt.Sprintf("Application %d. ", app)+words(pr, appPromptBytes))
	}
	for i, at := range poisson(r, rate, d) {
		w.arrivals = append(w.arrivals, arrival{at: at, app: r.IntN(apps), replica: r.IntN(2)})
		q := "Question " + strconv.Itoa(i) + ": "
		w.prompts = append(w.prompts, q+words(r, minQuestionBytes+r.IntN(maxQuestionBytes-minQuestionBytes+1)-len(q)))
	}
	return w
}

// sticky tells whether the workload's requests share prefixes a client could keep on one
// server: conversations or applications.
func (w *workload) sticky() bool { return w.slots > 0 || w.apps > 0 }

// assignApps assigns apps applications to servers of max-num-seqs seqs in proportion to their
// capacities: each in turn to the server with the fewest applications per sequence slot, the
// first such on a tie.
func assignApps(apps int, seqs []int) []int {
	count := make([]int, len(seqs))
	out := make([]int, apps)
	for app := range out {
		best := 0
		for s := range seqs {
			// count[s]/seqs[s] < count[best]/seqs[best]
			if count[s]*seqs[best] < count[best]*seqs[s] {
				best = s
			}
		}
		out[app] = best
		count[best]++
	}
	return out
}

// words returns about n bytes of text from r.
func words(r *rand.Rand, n int) string {
	vocabulary := []string{"cluster", "model", "token", "cache", "prefix", "gateway", "latency", "queue", "batch",
		"server", "request", "stream", "kernel", "tensor", "replica", "weight", "prompt", "answer", "the", "a", "of", "and"}
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(vocabulary[r.IntN(len(vocabulary))])
		if r.IntN(8) == 0 {
			b.WriteString(strconv.Itoa(r.IntN(1000)))
		}
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// conversation is one slot's current conversation in one configuration.
type conversation struct {
	id       int
	messages []message
	turn     int
	done     chan struct{} // closed when the turn in flight ends; nil when none
}

// newConversation starts the k-th conversation of a slot. The first of each slot starts
// part-way, with earlier turns made up.
func (w *workload) newConversation(slot, k int) *conversation {
	id := slot + k*w.slots
	r := rand.New(rand.NewPCG(w.seed, uint64(1000+id)))
	c := &conversation{id: id, messages: []message{{Role: "system", Content: fmt.Sprintf("Conversation %d. ", id) + words(r, systemPromptBytes)}}}
	if k == 0 {
		for c.turn = 0; c.turn < slot*w.turns/w.slots; c.turn++ {
			c.messages = append(c.messages, message{"user", w.userTurn(id, c.turn)}, message{"assistant", "Earlier answer " + strconv.Itoa(c.turn) + ": " + words(r, 300)})
		}
	}
	return c
}

func (w *workload) userTurn(id, turn int) string {
	r := rand.New(rand.NewPCG(w.seed, uint64(id*1000+turn)))
	return fmt.Sprintf("Turn %d: ", turn) + words(r, userTurnBytes)
}

// body is the request of a turn, of an independent prompt or of an application's question.
func body(model string, messages []message) []byte {
	m, _ := json.Marshal(messages)
	return []byte(`{"model":"` + model + `","messages":` + string(m) +
		`,"stream":true,"stream_options":{"include_usage":true},"max_tokens":` + strconv.Itoa(outputTokens) + `}`)
}

// meanPromptTokens estimates the mean prompt of the workload in tokens (4 bytes each), for
// the capacity of the pool.
func (w *workload) meanPromptTokens() float64 {
	if w.apps > 0 {
		// The application's system prompt and a question.
		return (float64(appPromptBytes) + float64(minQuestionBytes+maxQuestionBytes)/2) / 4
	}
	if w.slots == 0 {
		return float64(minPromptBytes+maxPromptBytes) / 2 / 4
	}
	// The system prompt, and on average half a conversation of turns, each a user turn and
	// an answer of outputTokens words of about 7 bytes.
	perTurn := float64(userTurnBytes + outputTokens*7)
	return (float64(systemPromptBytes) + perTurn*float64(w.turns)/2) / 4
}
