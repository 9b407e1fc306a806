# flowlogd image. Build: scripts/build-image.sh (makes the base with debootstrap where no
# registry can be reached), or `docker build --build-arg BASE=debian:bookworm-slim .`.
# The eBPF objects are CO-RE (relocated against the node's BTF at load time) and embedded
# in the addon, so the image runs on any node kernel with BTF and tcx or clsact.
#
# Two stages: everything that builds (clang, g++, node-gyp, devDependencies, npm) stays
# in the first; the image is only the files the daemon opens: node, the addon, the
# compiled JavaScript, the production node_modules, and the shared libraries those two
# binaries link (found with ldd), on an empty root. BENCHMARKS.md has its size.
ARG BASE=flowlogd-base:bookworm
FROM ${BASE} AS build
ARG NODE_VERSION=24.21.0
# The build host's CA bundle (scripts/build-image.sh copies it into the context): npm
# reaches the registry through it. Kept under /usr/local/share so installing
# ca-certificates below adds it to the system bundle instead of replacing it.
COPY .build-ca.crt /usr/local/share/ca-certificates/build-host.crt
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/build-host.crt
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates npm clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool pkg-config make g++ python3 \
      libmnl-dev libnetfilter-conntrack-dev \
    && rm -rf /var/lib/apt/lists/*
# A supported Node LTS from the npm registry (Debian's is 18); Debian's npm fetches it.
RUN arch=$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/') \
    && npm install --no-save --no-audit --no-fund --prefix /opt/node-pkg "node-linux-$arch@$NODE_VERSION" \
    && ln -s "/opt/node-pkg/node_modules/node-linux-$arch" /opt/node
ENV PATH=/opt/node/bin:$PATH
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY bpf/ bpf/
COPY addon/ addon/
COPY scripts/ scripts/
COPY binding.gyp tsconfig.json tsconfig.build.json ./
COPY src/ src/
# bin/flowlogd marks the project root for src/common/paths.ts (the entrypoint runs node directly).
COPY bin/ bin/
COPY test/kernel/fixtures/ test/kernel/fixtures/
# vmlinux.h comes from the build host's BTF; CO-RE makes the object portable. node-gyp
# is called without --silent so a compile error is in the build log.
RUN make -C bpf \
    && npx node-gyp rebuild --nodedir=/opt/node \
    && npm run build:ts \
    && npm prune --omit=dev --no-audit --no-fund \
    && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \
         -o -name '*.md' -o -name '*.ts' \) -type f -delete
# The runtime root: nothing else (but `flowlogd bench`'s helper, bpf/.output/benchtool:
# BPF stats and the empty program for `bench live`; `bench lab` also needs a node's ip,
# sysctl and conntrack, so it runs on the node, not in this image). The node binary's symbols are 18 MB it never reads.
RUN set -e; r=/rootfs/opt/flowlogd; mkdir -p "$r/build/Release" "$r/dist" /rootfs/usr/local/bin \
    && cp -L /opt/node/bin/node /rootfs/usr/local/bin/node \
    && strip --strip-all /rootfs/usr/local/bin/node \
    && cp build/Release/flowlogd.node "$r/build/Release/" \
    && strip --strip-unneeded "$r/build/Release/flowlogd.node" \
    && cp -r dist/src "$r/dist/src" && cp -r node_modules package.json bin "$r/" \
    && mkdir -p "$r/bpf/.output" && cp bpf/.output/benchtool "$r/bpf/.output/" \
    && for lib in $(ldd /opt/node/bin/node build/Release/flowlogd.node bpf/.output/benchtool \
         | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' | sort -u); do \
         cp --parents -L "$lib" /rootfs; done \
    && mkdir -p /rootfs/tmp /rootfs/var/log/calico/flowlogs && chmod 1777 /rootfs/tmp \
    && /rootfs/usr/local/bin/node --version

FROM scratch
COPY --from=build /rootfs/ /
WORKDIR /opt/flowlogd
# bin/flowlogd's flags (an 8 MB young generation, --expose-gc for the GC after each
# flush, the old generation's growth held to 1.5 times), without a shell to run that script.
ENTRYPOINT ["/usr/local/bin/node", "--expose-gc", "--max-semi-space-size=8", "--heap-growing-percent=50", "/opt/flowlogd/dist/src/cli/main.js"]
CMD ["run"]
