#!/usr/bin/env bash
# Builds the flowlogd image: scripts/build-image.sh [TAG] (default flowlogd:latest).
# Not part of `npm test` (minutes). Where no registry can be reached, the base is made
# locally (scripts/make-base-image.sh); elsewhere set BASE=debian:bookworm-slim.
# Installs docker.io with apt-get and starts dockerd when neither is there (this
# project's machines); on a machine with Docker it only builds.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
tag=${1:-flowlogd:latest}
base=${BASE:-flowlogd-base:bookworm}

if ! command -v docker >/dev/null || ! { command -v dockerd >/dev/null || docker info >/dev/null 2>&1; }; then
  echo "build-image: installing docker.io" >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "build-image: starting dockerd (log: /var/log/flowlogd-dockerd.log)" >&2
  nohup dockerd >/var/log/flowlogd-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "build-image: dockerd did not start" >&2; tail -20 /var/log/flowlogd-dockerd.log >&2; exit 1; }
fi
if [ "$base" = flowlogd-base:bookworm ]; then scripts/make-base-image.sh "$base"; fi

# npm inside the build reaches the registry with this machine's CA bundle (a TLS proxy
# may sit in between); the file is only in the build stage.
cp /etc/ssl/certs/ca-certificates.crt .build-ca.crt
trap 'rm -f .build-ca.crt' EXIT
start=$(date +%s)
DOCKER_BUILDKIT=0 docker build --build-arg BASE="$base" -t "$tag" .
echo "build-image: $tag built in $(($(date +%s) - start)) s, $(docker image inspect -f '{{.Size}}' "$tag") bytes" >&2
