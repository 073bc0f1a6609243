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
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

func newModelsCommand(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "models",
		Aliases: []string{"model"},
		Short:   "List the models the gateway routes, or get one",
		Example: `  kubectl inference models list --all
  kubectl inference models get llama-3-1-8b-instruct`,
		Args: cobra.NoArgs,
		RunE: requireCommand,
	}
	cmd.AddCommand(newModelsListCommand(f), newModelsGetCommand(f))
	return cmd
}

// model is a model as the commands show it: what the gateway lists, with what the cluster
// says of its ModelEntity beside it.
type model struct {
	ID             string `json:"id"`
	Object         string `json:"object"`
	Created        int64  `json:"created,omitempty"`
	OwnedBy        string `json:"owned_by"`
	Routable       bool   `json:"routable"`
	ServedModel    string `json:"served_model,omitempty"`
	Targets        string `json:"targets,omitempty"` // a virtual model's, as kubectl get shows them
	ReadyProviders *int32 `json:"ready_providers,omitempty"`
	Reason         string `json:"reason,omitempty"`
	Message        string `json:"message,omitempty"`
	age            time.Time
}

// modelList is the OpenAI list shape, so that -o json reads like the gateway's own answer.
type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

type modelsListOptions struct {
	f             *factory
	namespace     string
	allNamespaces bool
	all           bool
	output        string
}

func newModelsListCommand(f *factory) *cobra.Command {
	o := &modelsListOptions{f: f}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the models the gateway routes now (GET .../openai/-/v1/models)",
		Long: `List the models that the gateway routes now in a namespace (a workspace), as an OpenAI SDK
sees them from GET .../openai/-/v1/models, with each one's served model, ready providers and age
from its ModelEntity. --all adds the ModelEntities that are registered but not routable now, with
the reason.`,
		Example: `  kubectl inference models list
  kubectl inference models list -n team-a --all
  kubectl inference models list -A -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.complete(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list the models of every namespace the ModelEntities are in")
	cmd.Flags().BoolVar(&o.all, "all", false, "also list the ModelEntities that are not routable now, with the reason")
	addOutputFlag(cmd, &o.output, outputWide, outputJSON, outputYAML, outputName)
	return cmd
}

func (o *modelsListOptions) complete() error {
	if err := checkOutput(o.output, outputWide, outputJSON, outputYAML, outputName); err != nil {
		return err
	}
	var err error
	o.namespace, err = o.f.namespace()
	return err
}

func (o *modelsListOptions) run(ctx context.Context) error {
	entities, clusterErr := o.entities(ctx)
	if clusterErr != nil {
		fmt.Fprintf(o.f.streams.ErrOut, "warning: the cluster's ModelEntities are not shown: %v\n", clusterErr)
	}
	namespaces := []string{o.namespace}
	if o.allNamespaces {
		namespaces = nil
		for _, e := range entities {
			if !slices.Contains(namespaces, e.Namespace) {
				namespaces = append(namespaces, e.Namespace)
			}
		}
	}
	gw, err := o.f.gatewayClient(ctx)
	if err != nil {
		return err
	}
	byID := map[string]*inferencev1alpha1.ModelEntity{}
	for i := range entities {
		byID[entities[i].Namespace+"/"+entities[i].Name] = &entities[i]
	}
	var models []model
	for _, ns := range namespaces {
		var list modelList
		if err := gw.getJSON(ctx, gw.openAIBase(ns)+"/models", &list); err != nil {
			if o.allNamespaces && isStatus(err, http.StatusForbidden) {
				fmt.Fprintf(o.f.streams.ErrOut, "warning: namespace %s: %v\n", ns, err)
				continue
			}
			return err
		}
		for _, m := range list.Data {
			m.Routable = true
			if e := byID[m.ID]; e != nil {
				describeEntity(&m, e)
				delete(byID, m.ID)
			}
			models = append(models, m)
		}
	}
	if o.all {
		for id, e := range byID {
			m := model{ID: id, Object: "model", OwnedBy: e.Namespace}
			describeEntity(&m, e)
			models = append(models, m)
		}
	}
	slices.SortFunc(models, func(a, b model) int { return strings.Compare(a.ID, b.ID) })
	return o.print(models)
}

// entities lists the ModelEntities of the namespace, or of all of them.
func (o *modelsListOptions) entities(ctx context.Context) ([]inferencev1alpha1.ModelEntity, error) {
	c, err := o.f.cluster()
	if err != nil {
		return nil, err
	}
	var list inferencev1alpha1.ModelEntityList
	var opts []client.ListOption
	if !o.allNamespaces {
		opts = append(opts, client.InNamespace(o.namespace))
	}
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("list ModelEntities: %w", err)
	}
	return list.Items, nil
}

// describeEntity adds what the cluster says of m's ModelEntity.
func describeEntity(m *model, e *inferencev1alpha1.ModelEntity) {
	m.ServedModel = e.Spec.ServedModelName
	if len(e.Spec.Targets) > 0 {
		m.Targets = e.Status.TargetSummary
	}
	ready := e.Status.ReadyProviders
	m.ReadyProviders = &ready
	m.age = e.CreationTimestamp.Time
	if m.Created == 0 {
		m.Created = e.CreationTimestamp.Unix()
	}
	if !m.Routable {
		m.Reason, m.Message = "NotReconciled", "the manager has not reconciled it yet"
		if c := meta.FindStatusCondition(e.Status.Conditions, inferencev1alpha1.ConditionReady); c != nil {
			m.Reason, m.Message = c.Reason, c.Message
		}
	}
}

func (o *modelsListOptions) print(models []model) error {
	out := o.f.streams.Out
	switch o.output {
	case outputJSON, outputYAML:
		if models == nil {
			models = []model{}
		}
		return writeData(out, o.output, modelList{Object: "list", Data: models})
	case outputName:
		for _, m := range models {
			fmt.Fprintln(out, m.ID)
		}
		return nil
	}
	if len(models) == 0 {
		fmt.Fprintf(o.f.streams.ErrOut, "No models routable in namespace %s.\n", o.namespace)
		return nil
	}
	t := &table{header: []string{"ID", "SERVED MODEL", "READY PROVIDERS", "AGE"}}
	if o.all {
		t.header = []string{"ID", "SERVED MODEL", "READY PROVIDERS", "ROUTABLE", "REASON", "AGE"}
	}
	if o.output == outputWide {
		t.header = append(t.header, "OWNED BY")
	}
	for _, m := range models {
		providers := "<unknown>"
		if m.ReadyProviders != nil {
			providers = strconv.Itoa(int(*m.ReadyProviders))
		}
		served := m.ServedModel
		switch {
		case m.Targets != "":
			served = "virtual: " + m.Targets
		case served == "":
			served = "<unknown>"
		}
		row := []string{m.ID, served, providers}
		if o.all {
			reason := m.Reason
			if m.Routable {
				reason = "-"
			}
			row = append(row, strconv.FormatBool(m.Routable), reason)
		}
		row = append(row, since(m.age))
		if o.output == outputWide {
			row = append(row, m.OwnedBy)
		}
		t.add(row...)
	}
	return t.write(out)
}

type modelsGetOptions struct {
	f         *factory
	namespace string
	name      string
	output    string
}

func newModelsGetCommand(f *factory) *cobra.Command {
	o := &modelsGetOptions{f: f}
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Get one model the gateway routes (GET .../openai/-/v1/models/NAME)",
		Long: `Get one model that the gateway routes; NAME is the ModelEntity's name, or namespace/name. When the
gateway does not route it, the ModelEntity's condition says why.`,
		Example: `  kubectl inference models get llama-3-1-8b-instruct
  kubectl inference models get team-a/llama-3-1-8b-instruct -o json`,
		Args: exactArgs(1, "the model's NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(args); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	addOutputFlag(cmd, &o.output, outputWide, outputJSON, outputYAML, outputName)
	return cmd
}

func (o *modelsGetOptions) complete(args []string) error {
	if err := checkOutput(o.output, outputWide, outputJSON, outputYAML, outputName); err != nil {
		return err
	}
	var err error
	if o.namespace, err = o.f.namespace(); err != nil {
		return err
	}
	o.namespace, o.name = splitModel(args[0], o.namespace)
	return nil
}

func (o *modelsGetOptions) run(ctx context.Context) error {
	gw, err := o.f.gatewayClient(ctx)
	if err != nil {
		return err
	}
	var m model
	err = gw.getJSON(ctx, gw.openAIBase(o.namespace)+"/models/"+url.PathEscape(o.name), &m)
	if isStatus(err, http.StatusNotFound) {
		return o.explain(ctx, err)
	}
	if err != nil {
		return err
	}
	m.Routable = true
	if c, cerr := o.f.cluster(); cerr == nil {
		var e inferencev1alpha1.ModelEntity
		if c.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: o.name}, &e) == nil {
			describeEntity(&m, &e)
		}
	}
	lo := modelsListOptions{f: o.f, namespace: o.namespace, output: o.output}
	if o.output == outputJSON || o.output == outputYAML {
		return writeData(o.f.streams.Out, o.output, m)
	}
	return lo.print([]model{m})
}

// explain turns the gateway's 404 into what the cluster says of the entity.
func (o *modelsGetOptions) explain(ctx context.Context, notFound error) error {
	c, err := o.f.cluster()
	if err != nil {
		return notFound
	}
	var e inferencev1alpha1.ModelEntity
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: o.name}, &e); err != nil {
		return fmt.Errorf("%w\nThere is no ModelEntity %s in namespace %s: kubectl inference models list --all shows what is registered", notFound, o.name, o.namespace)
	}
	m := model{}
	describeEntity(&m, &e)
	return fmt.Errorf("%w\nModelEntity %s/%s exists but is not routable: %s: %s", notFound, o.namespace, o.name, m.Reason, m.Message)
}

// splitModel reads "name" or "namespace/name"; a model id's namespace is its workspace.
func splitModel(arg, namespace string) (ns, name string) {
	if ws, n, ok := strings.Cut(arg, "/"); ok && ws != "" && n != "" && !strings.Contains(n, "/") && len(validation.IsDNS1123Label(ws)) == 0 {
		return ws, n
	}
	return namespace, arg
}
