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

package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/infergate/infergate/internal/naming"
)

type chatOptions struct {
	f         *factory
	namespace string
	model     string
	prompt    string
	hasPrompt bool

	provider       string
	maxTokens      int64
	temperature    float64
	hasTemperature bool
	system         string
	noStream       bool
	output         string
}

func newChatCommand(f *factory) *cobra.Command {
	o := &chatOptions{f: f}
	cmd := &cobra.Command{
		Use:   "chat MODEL [PROMPT]",
		Short: "Chat with a model through the gateway; the answer streams in as it is written",
		Long: `Chat with a model entity through the gateway's OpenAI route: MODEL is the ModelEntity's name
(or namespace/name), as kubectl inference models list shows it. With --provider, MODEL is sent as
it is to that provider, through its provider route: the provider's own model id.

The prompt is PROMPT, else standard input when it is piped. Without either, on a terminal, the
chat is a conversation: type a message, read the answer, and so on; an empty line, "exit" or
Ctrl-D ends it.`,
		Example: `  kubectl inference chat llama-3-1-8b-instruct "Write a haiku about Kubernetes"
  echo "Summarise this" | kubectl inference chat team-a/llama-3-1-8b-instruct --max-tokens 200
  kubectl inference chat meta/llama-3.1-8b-instruct "Hello" --provider nvidia-build -n system
  kubectl inference chat llama-3-1-8b-instruct "Hello" -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("want MODEL and an optional PROMPT, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.hasTemperature = cmd.Flags().Changed("temperature")
			if err := o.complete(args); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.provider, "provider", "", "send MODEL as it is to this provider of the namespace, through its provider route")
	fl.Int64Var(&o.maxTokens, "max-tokens", 0, "most tokens to generate (default: the model's)")
	fl.Float64Var(&o.temperature, "temperature", 0, "sampling temperature, 0 to 2 (default: the model's)")
	fl.StringVar(&o.system, "system-message", "", "a system message that comes before the conversation")
	fl.BoolVar(&o.noStream, "no-stream", false, "wait for the whole answer instead of printing it as it is written")
	fl.StringVarP(&o.output, "output", "o", "text", "text: the answer as it is written; json: the whole answer as the gateway returns it (not streamed)")
	return cmd
}

func (o *chatOptions) complete(args []string) error {
	switch o.output {
	case "", "text", outputJSON:
	default:
		return usagef("--output %q is not one of text, json", o.output)
	}
	if o.hasTemperature && (o.temperature < 0 || o.temperature > 2) {
		return usagef("--temperature %v is not between 0 and 2", o.temperature)
	}
	ns, err := o.f.namespace()
	if err != nil {
		return err
	}
	o.namespace, o.model = ns, args[0]
	if o.provider == "" {
		o.namespace, o.model = splitModel(args[0], ns)
	}
	if len(args) == 2 {
		o.prompt, o.hasPrompt = args[1], true
	}
	return nil
}

func (o *chatOptions) run(ctx context.Context) error {
	gw, err := o.f.gatewayClient(ctx)
	if err != nil {
		return err
	}
	base := gw.openAIBase(o.namespace)
	if o.provider != "" {
		base = gw.workspace(o.namespace) + "/provider/" + o.provider + "/-/v1"
	}
	opts := []option.RequestOption{option.WithBaseURL(base + "/"), option.WithHTTPClient(gw.http), option.WithMaxRetries(0)}
	if gw.token != "" {
		opts = append(opts, option.WithAPIKey(gw.token))
	} else {
		opts = append(opts, option.WithHeaderDel("Authorization"))
	}
	c := &chatSession{o: o, gw: gw, client: openai.NewClient(opts...)}
	if o.system != "" {
		c.messages = append(c.messages, openai.SystemMessage(o.system))
	}

	in := o.f.streams.In
	switch {
	case o.hasPrompt:
		return c.say(ctx, o.prompt)
	case !isTerminal(in):
		data, err := io.ReadAll(in)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(data)) == "" {
			return usagef("no prompt: give PROMPT, or pipe it in")
		}
		return c.say(ctx, string(data))
	}
	// A conversation on a terminal.
	fmt.Fprintf(o.f.streams.ErrOut, "Chatting with %s. An empty line, \"exit\" or Ctrl-D ends the chat.\n", c.label())
	lines := bufio.NewScanner(in)
	for {
		fmt.Fprint(o.f.streams.ErrOut, "> ")
		if !lines.Scan() {
			fmt.Fprintln(o.f.streams.ErrOut)
			return lines.Err()
		}
		line := strings.TrimSpace(lines.Text())
		if line == "" || line == "exit" || line == "quit" {
			return nil
		}
		if err := c.say(ctx, line); err != nil {
			return err
		}
	}
}

// chatSession is a conversation: each answer joins the messages sent next.
type chatSession struct {
	o        *chatOptions
	gw       *gatewayClient
	client   openai.Client
	messages []openai.ChatCompletionMessageParamUnion
}

func (c *chatSession) label() string {
	if c.o.provider != "" {
		return c.o.model + " on provider " + c.o.namespace + "/" + c.o.provider
	}
	return c.o.namespace + "/" + c.o.model
}

// say sends prompt with the conversation so far and prints the answer.
func (c *chatSession) say(ctx context.Context, prompt string) error {
	o := c.o
	c.messages = append(c.messages, openai.UserMessage(prompt))
	params := openai.ChatCompletionNewParams{Model: o.model, Messages: c.messages}
	if o.maxTokens > 0 {
		params.MaxTokens = openai.Int(o.maxTokens)
	}
	if o.hasTemperature {
		params.Temperature = openai.Float(o.temperature)
	}
	out := o.f.streams.Out
	if o.noStream || o.output == outputJSON {
		resp, err := c.client.Chat.Completions.New(ctx, params)
		if err != nil {
			return c.explain(err)
		}
		if o.output == outputJSON {
			_, err := fmt.Fprintln(out, resp.RawJSON())
			return err
		}
		if len(resp.Choices) == 0 {
			return errors.New("the answer has no choices")
		}
		answer := resp.Choices[0].Message.Content
		c.messages = append(c.messages, openai.AssistantMessage(answer))
		_, err = fmt.Fprintln(out, answer)
		return err
	}
	stream := c.client.Chat.Completions.NewStreaming(ctx, params)
	defer stream.Close()
	var answer strings.Builder
	for stream.Next() {
		for _, choice := range stream.Current().Choices {
			answer.WriteString(choice.Delta.Content)
			fmt.Fprint(out, choice.Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		if answer.Len() > 0 {
			fmt.Fprintln(out)
		}
		return c.explain(err)
	}
	fmt.Fprintln(out)
	c.messages = append(c.messages, openai.AssistantMessage(answer.String()))
	return nil
}

// explain turns the SDK's error into the gateway's answer, with a hint for names that are not
// model entities.
func (c *chatSession) explain(err error) error {
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			return fmt.Errorf("cannot reach the gateway at %s (from %s): %w; give its URL with --gateway-url, $%s or kubectl inference config set --gateway-url",
				c.gw.base, c.gw.source, unwrapURLError(urlErr), envGatewayURL)
		}
		return err
	}
	e := c.gw.answerError(apiErr.StatusCode, []byte(apiErr.RawJSON()))
	if apiErr.StatusCode == http.StatusUnprocessableEntity && c.o.provider == "" && !naming.Valid(c.o.model) {
		return fmt.Errorf("%w\n%q is not a model entity name: a ModelEntity's name has lowercase letters, digits and hyphens "+
			"only, so a served model such as meta/llama-3.1-8b-instruct is registered as meta-llama-3-1-8b-instruct. "+
			"kubectl inference models list shows the names; --provider P sends a served model name to a provider as it is", e, c.o.namespace+"/"+c.o.model)
	}
	return e
}

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
