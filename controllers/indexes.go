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

package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

// IndexFields adds the field indexes the controllers look objects up by. It runs once per
// process, on the cache before it starts: with leader election, the controllers of each term
// share a cache that is already running.
func IndexFields(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &inferencev1alpha1.ModelEntity{}, indexEntityServedModel, func(o client.Object) []string {
		e := o.(*inferencev1alpha1.ModelEntity)
		names := []string{e.Spec.ServedModelName}
		for _, ref := range e.Spec.Providers {
			if ref.ServedModelName != "" {
				names = append(names, ref.ServedModelName)
			}
		}
		return names
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &inferencev1alpha1.ModelEntity{}, indexEntityProviderRef, func(o client.Object) []string {
		e := o.(*inferencev1alpha1.ModelEntity)
		keys := make([]string, 0, len(e.Spec.Providers))
		for _, ref := range e.Spec.Providers {
			keys = append(keys, refKey(e.Namespace, ref.Namespace, ref.Name))
		}
		return keys
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &inferencev1alpha1.ModelEntity{}, indexEntityTargetRef, func(o client.Object) []string {
		e := o.(*inferencev1alpha1.ModelEntity)
		keys := make([]string, 0, len(e.Spec.Targets))
		for _, t := range e.Spec.Targets {
			keys = append(keys, refKey(e.Namespace, t.Namespace, t.Name))
		}
		return keys
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &inferencev1alpha1.Provider{}, indexProviderSecret, func(o client.Object) []string {
		if ref := o.(*inferencev1alpha1.Provider).Spec.APIKeySecretRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := indexer.IndexField(ctx, &inferencev1alpha1.Provider{}, indexProviderService, func(o client.Object) []string {
		if s := o.(*inferencev1alpha1.Provider).Spec.Service; s != nil {
			return []string{s.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	return nil
}

// refKey is the index key, "namespace/name", of a reference from an object in ns that may
// leave its namespace out.
func refKey(ns, refNamespace, name string) string {
	if refNamespace == "" {
		refNamespace = ns
	}
	return refNamespace + "/" + name
}
