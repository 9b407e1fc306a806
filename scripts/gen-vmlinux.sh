#!/usr/bin/env bash
# Writes vmlinux.h (every kernel type, for CO-RE) from the running kernel's BTF.
set -euo pipefail
out=${1:?usage: gen-vmlinux.sh OUT}
btf=/sys/kernel/btf/vmlinux
if [ ! -r "$btf" ]; then
  echo "gen-vmlinux: $btf is missing: this kernel was built without CONFIG_DEBUG_INFO_BTF, which flowlogd's CO-RE programs need" >&2
  exit 1
fi
bpftool btf dump file "$btf" format c > "$out.tmp"
mv "$out.tmp" "$out"
