#!/usr/bin/env bash
# The main job on a fresh machine: install what ckpt needs, start the sample container under
# runc, save it to the local store, remove it and its bundle, restore it, and show that it
# carried on counting with its memory intact.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

ckpt=.venv/bin/ckpt
name="ckpt-demo-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"   # unique: runc names cgroups after it
work=$(mktemp -d /tmp/ckpt-demo.XXXXXX)
trap 'runc delete --force "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

echo "== building the sample bundle (busybox + a workload holding 64 MiB) in $work"
.venv/bin/python samples/make_bundle.py "$work/bundle" --mem 64 >/dev/null
# The workload moves its stdio into the container at once (CRIU cannot dump a host file on it);
# runc's own errors are shown if it fails to start.
runc run --detach --bundle "$work/bundle" "$name" </dev/null >/dev/null 2>"$work/runc.err" ||
    { cat "$work/runc.err" >&2; exit 1; }
sleep 2
before=$(cat "$work/bundle/rootfs/state")
echo "== running:  $before"

echo "== ckpt save $name"
$ckpt save "$name"
echo "== removing the container's bundle and rootfs"
rm -rf "$work/bundle"

echo "== ckpt restore $name:latest"
$ckpt restore "$name:latest"
sleep 2
bundle=$($ckpt restore "$name:latest" --if-running-ok --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["bundle"])')
after=$(cat "$bundle/rootfs/state")
echo "== restored: $after"
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
if [ "$(field nonce "$after")" != "$(field nonce "$before")" ] ||
   [ "$(field checksum "$after")" != "$(field verified "$after")" ] ||
   [ "$(field counter "$after")" -le "$(field counter "$before")" ]; then
    echo "demo: the restored workload is not the one saved, or its memory check failed" >&2
    exit 1
fi
echo "   (same nonce and checksum: the same process, memory intact; the counter went on)"
runc list | grep -E "^ID|^$name"

echo "== ckpt inspect $name:latest"
$ckpt inspect "$name:latest"
runc delete --force "$name"
rm -rf "$bundle"
echo "== done: the restored container was removed again; its checkpoints stay in the store:"
$ckpt ls
