#!/usr/bin/env bash
# The test command: lint and format checks, type checks, unit tests, kernel tests
# (as root: they build netns labs and load eBPF), on the Node LTS setup.sh installed.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
export PATH="$top/.tools/node/bin:$PATH"
exec npm test "$@"
