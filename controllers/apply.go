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
	"fmt"
	"reflect"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

// notOwnedError says that an object of the name the controller would give what it creates
// exists and is not controlled by the object that creates it: it is someone else's.
type notOwnedError struct {
	kind string // as a person reads it: Service, apps/v1 Deployment
	name string
}

func (e *notOwnedError) Error() string {
	article := "a "
	if strings.ContainsRune("aeiouAEIOU", rune(e.kind[0])) {
		article = "an "
	}
	return article + e.kind + " named " + e.name + " exists and does not belong to this Deployment"
}

// kindOf names obj's kind for messages, with its API version where the kind alone could be
// taken for one of this API's: an apps/v1 Deployment beside an inference Deployment.
func kindOf(obj client.Object) string {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Group == "" || gvk.Group == inferencev1alpha1.GroupVersion.Group {
		return gvk.Kind
	}
	return gvk.GroupVersion().String() + " " + gvk.Kind
}

// ownedUID reads the object of obj's kind and name and returns its UID when owner controls
// it, "" when there is none, and a *notOwnedError when it is someone else's.
func ownedUID(ctx context.Context, c client.Reader, owner, obj client.Object) (types.UID, error) {
	kind := kindOf(obj)
	existing := reflect.New(reflect.TypeOf(obj).Elem()).Interface().(client.Object)
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("read %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)
	case !metav1.IsControlledBy(existing, owner):
		return "", &notOwnedError{kind: kind, name: obj.GetName()}
	}
	return existing.GetUID(), nil
}

// createOnly is a resourceVersion that no object has (the largest the API server can parse).
// An apply that carries it creates the object when there is none, since the API server wipes
// the version of what an apply creates, and is refused with a conflict when one exists: it
// never writes an object that was not read.
const createOnly = "18446744073709551615"

// applyOwned server-side applies obj, a typed object with its TypeMeta and its controller
// reference to owner, and never writes an object of its name that owner does not control
// (a *notOwnedError). When the cache has none, the apply may only create one: an object of
// that name made since, which the cache has not seen, is a conflict. When the cache has
// owner's, the apply carries its UID: one that replaced it since is refused.
func applyOwned(ctx context.Context, c client.Client, owner, obj client.Object) error {
	uid, err := ownedUID(ctx, c, owner, obj)
	if err != nil {
		return err
	}
	desired := obj.DeepCopyObject().(client.Object)
	if uid == "" {
		desired.SetResourceVersion(createOnly)
	} else {
		desired.SetUID(uid)
	}
	return apply(ctx, c, desired)
}

// apply server-side applies the fields set in obj (a typed object with its TypeMeta set), as
// the field manager FieldOwner. Zero values are dropped first, so that only what the
// controller means to own is claimed and the API server's defaults stay untouched.
func apply(ctx context.Context, c client.Client, obj client.Object) error {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	delete(u, "status")
	prune(u)
	ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
	if err := c.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s/%s: %w", kindOf(obj), obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// prune removes nil values and empty maps and lists, recursively.
func prune(m map[string]any) {
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			prune(v)
			if len(v) == 0 {
				delete(m, k)
			}
		case []any:
			if len(v) == 0 {
				delete(m, k)
				continue
			}
			for _, item := range v {
				if im, ok := item.(map[string]any); ok {
					prune(im)
				}
			}
		}
	}
}
