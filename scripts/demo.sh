#!/usr/bin/env bash
# demo.sh is "make demo": the whole system on an embedded sample, with the
# integration microVM standing in for the Nitro host (see
# integration/demo/main.go). It installs what it needs first
# (scripts/ensure-deps.sh), so it is the one command a newcomer runs on a
# fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
scripts/ensure-deps.sh
exec go run ./integration/demo "$@"
