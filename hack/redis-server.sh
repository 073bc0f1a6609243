#!/usr/bin/env bash
# Makes sure redis-server is installed: the budget store's tests start a real one, as envtest
# starts kube-apiserver. It installs Debian's package when it is missing; set REDIS_SERVER to
# use another binary.
set -euo pipefail
if [ -n "${REDIS_SERVER:-}" ] || command -v redis-server >/dev/null; then
	exit 0
fi
if ! command -v apt-get >/dev/null; then
	echo "redis-server is needed by the tests: install it (Redis 7 or Valkey), or set REDIS_SERVER to its binary" >&2
	exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing redis-server from apt (the budget store's tests run a real one)" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >&2
