# infergate — see README.md for the two commands a newcomer needs: `make quickstart` and `make test`.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# Tools are pinned and installed into ./bin by `go install`.
LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
HELM_VERSION ?= v3.22.0
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
# promtool unit-tests the alerts; the version is that of the Prometheus 3 module.
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL ?= $(LOCALBIN)/promtool-$(PROMTOOL_VERSION)
# helm's release build flags: its version, and the Kubernetes version it assumes without a cluster.
HELM_LDFLAGS = -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37

# Control-plane binaries for envtest (kube-apiserver, etcd, kubectl), built from the module proxy
# into a cache outside the repository by hack/envtest-assets.sh.
ENVTEST_ASSETS = $(shell hack/envtest-assets.sh)

GO_TEST_FLAGS ?= -race -count=1

# The manager image that docker-build builds and deploy runs.
IMG ?= ghcr.io/infergate/infergate:0.1.0
CONTAINER_TOOL ?= docker

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Getting started

.PHONY: quickstart
quickstart: ## Run infergate locally with no cluster: API server, simulator, manager, samples. Ctrl-C stops it.
	go build -o $(LOCALBIN)/quickstart ./hack/quickstart
	$(LOCALBIN)/quickstart $(QUICKSTART_FLAGS)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from the API types and markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	cp config/crd/bases/*.yaml charts/infergate/crds/
	cp config/grafana/infergate-dashboard.json config/prometheus/prometheusrule.yaml charts/infergate/files/

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files are stale, code is not gofmt-clean or go vet complains.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@git diff --exit-code -- api config charts/infergate/crds charts/infergate/files || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard -- api config charts/infergate/crds charts/infergate/files)" || { echo "generated files are not committed:"; git ls-files --others --exclude-standard -- api config charts/infergate/crds charts/infergate/files; exit 1; }
	go vet ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, etcd and kubectl for envtest (first time about 10 minutes).
	@hack/envtest-assets.sh >/dev/null

.PHONY: redis-server
redis-server: ## Install redis-server from apt when it is missing: the budget store's tests run a real one.
	@hack/redis-server.sh

.PHONY: test
test: manifests generate vet envtest-assets redis-server $(HELM) $(PROMTOOL) ## Run unit and envtest suites against a real kube-apiserver and Redis.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" HELM="$(HELM)" PROMTOOL="$(PROMTOOL)" go test $(GO_TEST_FLAGS) ./...

##@ Build

.PHONY: build
build: ## Build the manager, the simulator and the kubectl plugin (kubectl-inference) into ./bin.
	go build -o $(LOCALBIN)/manager ./cmd
	go build -o $(LOCALBIN)/simulator ./cmd/simulator
	go build -o $(LOCALBIN)/kubectl-inference ./cmd/kubectl-inference

PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64

.PHONY: dist-plugin
dist-plugin: ## Build the kubectl plugin for each of PLUGIN_PLATFORMS into ./dist, to release beside the image.
	@mkdir -p dist
	@for platform in $(PLUGIN_PLATFORMS); do \
	  os=$${platform%/*}; arch=$${platform#*/}; ext=; [ "$$os" = windows ] && ext=.exe; \
	  echo "kubectl-inference $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags="-s -w" -o dist/kubectl-inference-$$os-$$arch$$ext ./cmd/kubectl-inference; \
	done

.PHONY: docker-build
docker-build: ## Build the manager image $(IMG) (needs a container engine).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the manager image $(IMG).
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: simulator
simulator: ## Run the OpenAI-compatible simulator on 127.0.0.1:9000.
	go run ./cmd/simulator --models meta/llama-3.1-8b-instruct --chunk-delay 50ms

##@ Benchmarks

.PHONY: bench
bench: envtest-assets ## Run the Go benchmarks (gateway vs direct in-process, with and without authentication, routing, JSON scanning).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test -run '^$$' -bench . -benchmem ./internal/...

.PHONY: bench-routing
bench-routing: envtest-assets ## Measure route programming latency and a 2,000-entity cluster and model lists against envtest (about 2 minutes).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/benchrouting

.PHONY: bench-gateway
bench-gateway: envtest-assets ## Measure the gateway against direct calls, and with authentication against without, with separate processes and vegeta (about 8 minutes).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/benchgateway

.PHONY: bench-pool
bench-pool: ## Measure provider choice on pools of simulated vLLM servers: TTFT, tokens/s and prefix cache hits per balancing policy, for independent prompts, conversations and shared system prompts; and a virtual model falling back to a hosted API at 120 % of the self-hosted pool's capacity, against no fallback (about 11 minutes; the fallback phase alone, -workloads fallback, about 1).
	go run ./hack/benchpool

.PHONY: bench-budget
bench-budget: redis-server ## Measure InferenceBudgets with three gateway replicas on Redis and 200 clients: tokens admitted per minute against the limit, the limit / replicas fallback, added latency, Redis killed under load (about 40 minutes; -short in 9).
	go run ./hack/benchbudget

.PHONY: bench-fairness
bench-fairness: redis-server ## Measure fair share and priority on a saturated pool of simulated vLLM servers, ten workspaces, one flooding: Jain's index and quiet TTFT with one replica, three on Redis and unprotected; work conservation; Critical against Sheddable; the queue's overhead (about 14 minutes; -short in 4).
	go run ./hack/benchfairness

##@ Reliability

CHAOS_REPORT ?= $(LOCALBIN)/chaos-report.jsonl
CHAOS_ENV = INFERGATE_CHAOS=full INFERGATE_CHAOS_REPORT="$(abspath $(CHAOS_REPORT))" KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)"
CHAOS_TESTS = TestProviderKilledUnderLoad|TestAllProvidersFailThenOneRecovers|TestAPIServerAwayUnderLoad|TestReplicaDrainedUnderLoad|TestFollowerServesAndTakesOver|TestSlowAndHostileClients|TestSoak

.PHONY: chaos
chaos: envtest-assets ## Run the fault and soak scenarios at full size (providers killed or failing, API server away 60 s, drain, leader killed, hostile clients, 10-minute soak) and print their table (about 18 minutes).
	@mkdir -p $(LOCALBIN) && rm -f $(CHAOS_REPORT)
	$(CHAOS_ENV) go test -count=1 -v -run '^($(CHAOS_TESTS))$$' ./internal/gateway; gateway=$$?; \
	$(CHAOS_ENV) go test -count=1 -timeout 30m -v -run '^($(CHAOS_TESTS))$$' ./test/e2e; e2e=$$?; \
	echo; go run ./hack/chaosreport < $(CHAOS_REPORT); exit $$((gateway | e2e))

.PHONY: run
run: manifests generate ## Run the manager against the cluster in $KUBECONFIG.
	go run ./cmd --log-format=console

.PHONY: install
install: manifests ## Install the CRDs into the cluster in $KUBECONFIG.
	kubectl apply --server-side -f config/crd/bases

.PHONY: uninstall
uninstall: ## Remove the CRDs (and every object of their kinds) from the cluster.
	kubectl delete --ignore-not-found -f config/crd/bases

##@ Deployment

.PHONY: deploy
deploy: manifests ## Deploy to the cluster in $KUBECONFIG with kustomize (config/default, the chart's defaults), image $(IMG).
	kubectl apply --server-side -f config/crd/bases
	kubectl wait --for=condition=Established --timeout=60s -f config/crd/bases
	manifest="$$(kubectl kustomize config/default | sed -E 's|image: ghcr\.io/infergate/infergate([:@][^[:space:]]*)?$$|image: $(IMG)|')"; \
	  awk -v img='$(IMG)' '$$1 == "image:" && $$2 == img { found = 1 } END { exit !found }' <<<"$$manifest" || \
	  { echo "deploy: config/default has no image ghcr.io/infergate/infergate[:tag][@digest] to set to $(IMG)" >&2; exit 1; }; \
	  kubectl apply --server-side -f - <<<"$$manifest"

.PHONY: undeploy
undeploy: ## Remove what deploy created: CRDs (and every infergate object) and the system namespace with its Secrets included.
	kubectl delete --ignore-not-found -k config/default

.PHONY: helm-lint
helm-lint: $(HELM) ## Lint the Helm chart with its default and all-options values.
	$(HELM) lint --strict charts/infergate
	$(HELM) lint --strict charts/infergate --values charts/infergate/ci/all-options-values.yaml

.PHONY: helm-install
helm-install: $(HELM) ## Install or upgrade the chart in the cluster in $KUBECONFIG (namespace infergate-system).
	$(HELM) upgrade --install infergate charts/infergate --namespace infergate-system --create-namespace $(HELM_FLAGS)

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)

$(HELM): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install -ldflags "$(HELM_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/helm $(HELM)

$(PROMTOOL): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) GOFLAGS= go install -ldflags "-s -w" github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	mv $(LOCALBIN)/promtool $(PROMTOOL)
