#!/usr/bin/env bash
# Builds the control-plane binaries that envtest needs (kube-apiserver, etcd) and kubectl from the
# Go module proxy, because setup-envtest cannot download release archives here.
#
# The binaries go to a cache directory outside the repository, keyed by version, so later runs
# reuse them. The script prints the directory on its last line of stdout; progress goes to stderr.
#
#   KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)
#
# Environment:
#   INFERGATE_ASSETS_DIR  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/infergate/envtest)
#   K8S_VERSION           Kubernetes release (default 1.37.2); staging modules use v0.<minor>.<patch>
#   ETCD_VERSION          etcd release (default 3.7.0)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.7.0}
cache_root=${INFERGATE_ASSETS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/infergate/envtest}
dir="$cache_root/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-$(go env GOOS)-$(go env GOARCH)"

log() { printf '[envtest-assets] %s\n' "$*" >&2; }

ready() { [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ] && [ -x "$dir/kubectl" ]; }

if ready; then
	echo "$dir"
	exit 0
fi

mkdir -p "$cache_root"
# One builder at a time: parallel `make test` runs wait for the first to finish.
exec 9>"$cache_root/.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi
if ready; then
	echo "$dir"
	exit 0
fi

major=${K8S_VERSION%%.*}
rest=${K8S_VERSION#*.}
minor=${rest%%.*}
staging_version="v0.${rest}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dir.partial"

start=$SECONDS
elapsed() { echo "$((SECONDS - start))s"; }

build_etcd() {
	log "etcd v${ETCD_VERSION}: resolving modules"
	mkdir -p "$work/etcd"
	(
		cd "$work/etcd"
		go mod init infergate.local/etcd-assets >/dev/null 2>&1
		go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null 2>&1
		log "etcd v${ETCD_VERSION}: compiling ($(elapsed))"
		CGO_ENABLED=0 go build -trimpath -o "$dir.partial/etcd" go.etcd.io/etcd/server/v3
	)
	log "etcd v${ETCD_VERSION}: done ($(elapsed))"
}

build_kubernetes() {
	log "kubernetes v${K8S_VERSION}: resolving modules (staging modules at ${staging_version})"
	mkdir -p "$work/k8s"
	cd "$work/k8s"
	gomod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	[ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@v${K8S_VERSION}"; exit 1; }
	{
		echo "module infergate.local/kubernetes-assets"
		echo
		echo "go $(go env GOVERSION | sed 's/^go\([0-9]*\.[0-9]*\).*/\1/')"
		echo
		echo "require k8s.io/kubernetes v${K8S_VERSION}"
		echo
		# Every staging module is replaced by its published copy at the matching version.
		sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*#replace \1 => \1 '"${staging_version}"'#p' "$gomod"
	} >go.mod
	log "kubernetes v${K8S_VERSION}: $(grep -c '^replace' go.mod) staging modules replaced; downloading"
	go mod tidy >/dev/null 2>&1 || true
	cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
	go mod tidy -e >/dev/null 2>&1
	ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=${major} -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"
	log "kubernetes v${K8S_VERSION}: compiling kube-apiserver, the long step: about 9 minutes on 2 cores ($(elapsed))"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
	log "kubernetes v${K8S_VERSION}: compiling kubectl ($(elapsed))"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir.partial/kubectl" k8s.io/kubernetes/cmd/kubectl
	log "kubernetes v${K8S_VERSION}: done ($(elapsed))"
}

# A ticker so that a long, quiet compile still shows it is alive.
( while sleep 30; do log "still building ($(elapsed))"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null; rm -rf "$work"' EXIT

build_etcd
build_kubernetes

"$dir.partial/kube-apiserver" --version >&2
rm -rf "$dir"
mv "$dir.partial" "$dir"
log "assets ready in $dir ($(elapsed))"
echo "$dir"
