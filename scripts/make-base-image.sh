#!/usr/bin/env bash
# Makes a Debian base image locally, for machines that cannot pull from any registry:
# debootstrap (minbase) from the same Debian mirror this machine's apt uses, imported
# into docker. Usage: scripts/make-base-image.sh [NAME] (default flowlogd-base:bookworm).
# Installs debootstrap with apt-get if it is missing. Idempotent: an existing image is kept.
set -euo pipefail
name=${1:-flowlogd-base:bookworm}
suite=${SUITE:-bookworm}

if docker image inspect "$name" >/dev/null 2>&1; then
  echo "make-base-image: $name exists" >&2
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "make-base-image: installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends debootstrap >/dev/null
fi
# The mirror apt already uses here (deb822 .sources or a one-line sources.list).
mirror=${MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1)}
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "make-base-image: no Debian mirror found in apt's sources; set MIRROR" >&2; exit 1; }

dir=$(mktemp -d /var/tmp/flowlogd-base.XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "make-base-image: debootstrap $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$dir" "$mirror" >/dev/null
# apt inside builds uses the same mirror; no caches or docs in the image.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
tar -C "$dir" -c . | docker import - "$name" >/dev/null
echo "make-base-image: $name ($(docker image inspect -f '{{.Size}}' "$name") bytes)" >&2
