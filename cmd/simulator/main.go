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
measured without a real model. The API key, when set, is read from $SIMULATOR_API_KEY.`,
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
	f.IntVar(&opts.Chunks, "chunks", 8, "content chunks per streamed response (and words per response)")
	f.DurationVar(&opts.ChunkDelay, "chunk-delay", 0, "pause before each streamed chunk")
	f.DurationVar(&opts.Latency, "latency", 0, "pause before each response's headers")
	f.IntVar(&opts.EmbeddingDims, "embedding-dims", 16, "length of embedding vectors")
	f.BoolVar(&opts.SSEExtras, "sse-extras", false, "add SSE comments, id: and event: lines to streams")
	return cmd
}
