#!/usr/bin/env bash
# Fails if any C/C++ source of ours is not clang-formatted (vmlinux.h is generated).
# With --fix, formats them in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
files=$(ls bpf/*.bpf.c bpf/include/*.h bpf/tools/*.c bpf/tools/*.h addon/src/*.cc addon/src/*.h test/kernel/fixtures/*.c)
if [ "${1:-}" = "--fix" ]; then
  clang-format -i $files
else
  clang-format --dry-run --Werror $files
fi
