#!/usr/bin/env bash
# demo.sh is "make demo": the whole system on an embedded sample, with the
# integration microVM standing in for the Nitro host (see
# integration/demo/main.go). It installs what it needs first when a tool is
# missing (scripts/deps.sh, as root or through sudo), so it is the one
# command a newcomer runs on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
missing=
for tool in go qemu-system-x86_64 umoci skopeo cpio depmod; do
	command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -x /bin/busybox ] || missing="$missing busybox"
if [ -n "$missing" ]; then
	echo "demo: installing dependencies (missing:$missing)"
	scripts/deps.sh
fi
exec go run ./integration/demo "$@"
