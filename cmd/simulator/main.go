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

// Command simulator runs an OpenAI-compatible model server for trying infergate without GPUs:
// chat completions, completions and embeddings (JSON or SSE streams), /v1/models and health
// endpoints. See package internal/simulator for the per-request X-Sim-* headers.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/infergate/infergate/internal/simulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var (
		listen string
		opts   simulator.Options
	)
	cmd := &cobra.Command{
		Use:   "simulator",
		Short: "An OpenAI-compatible model server for tests, benchmarks and the quickstart",
		Long: `simulator answers OpenAI requests with generated text, so that infergate can be tried and
measured without a real model. The API key, when set, is read from $SIMULATOR_API_KEY.

With --max-num-seqs, --prefill-time-per-token, --decode-time-per-seq and --kv-cache-blocks it
behaves like a GPU server running vLLM: a bounded batch with a waiting queue, time to first
token that grows with the queue and with the prompt tokens the prefix cache misses, decode
steps that slow as the batch grows, and vLLM's metrics on /metrics
(vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc, ...).`,
		Example: `  # A server like one GPU running an 8B model with vLLM.
  simulator --listen 127.0.0.1:9001 --models meta/llama-3.1-8b-instruct --chunks 64 \
    --chunk-delay 15ms --decode-time-per-seq 1ms --max-num-seqs 8 \
    --prefill-time-per-token 50us --kv-cache-blocks 4096`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.APIKey = os.Getenv("SIMULATOR_API_KEY")
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: simulator.New(opts), ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(cmd.OutOrStdout(), "simulator serving %v on http://%s\n", opts.Models, ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return err
			}
			if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:9000", "address to listen on")
	f.StringVar(&opts.Name, "name", "simulator", "name shown in the generated text")
	f.StringSliceVar(&opts.Models, "models", []string{"sim/model"}, "served model ids, comma separated")
	f.IntVar(&opts.Chunks, "chunks", 8, "tokens per response (content chunks of a stream), unless max_tokens asks for fewer")
	f.DurationVar(&opts.ChunkDelay, "chunk-delay", 0, "time of a decode step with one sequence running: the pause before each token")
	f.DurationVar(&opts.Latency, "latency", 0, "pause before each response's headers")
	f.IntVar(&opts.EmbeddingDims, "embedding-dims", 16, "length of embedding vectors")
	f.BoolVar(&opts.SSEExtras, "sse-extras", false, "add SSE comments, id: and event: lines to streams")
	f.IntVar(&opts.MaxNumSeqs, "max-num-seqs", 0, "sequences that run at once, as vLLM's --max-num-seqs; the others wait (0: no bound)")
	f.DurationVar(&opts.PrefillTimePerToken, "prefill-time-per-token", 0, "prefill time per prompt token not in the prefix cache; prompts are prefilled one at a time, and the prefill yields the first token")
	f.DurationVar(&opts.DecodeTimePerSeq, "decode-time-per-seq", 0, "added to each decode step for every other running sequence")
	f.IntVar(&opts.KVCacheBlocks, "kv-cache-blocks", 0, "KV cache blocks: enables the prefix cache (LRU) and makes sequences wait for room (0: no cache)")
	f.IntVar(&opts.BlockSize, "block-size", 16, "tokens per KV cache block (4 bytes of prompt text make a token)")
	return cmd
}
