# flowlogd image. Build: docker build -t flowlogd .
# The eBPF objects are CO-RE (relocated against the node's BTF at load time) and embedded
# in the addon, so the image runs on any node kernel with BTF and tcx or clsact.
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates npm clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool pkg-config make g++ python3 \
      libmnl-dev libnetfilter-conntrack-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/ scripts/
RUN arch=$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/') \
    && mkdir -p .tools/node-pkg && npm install --silent --no-save --prefix .tools/node-pkg node-linux-$arch@24.21.0 \
    && ln -s /src/.tools/node-pkg/node_modules/node-linux-$arch .tools/node
ENV PATH=/src/.tools/node/bin:$PATH
RUN npm install --ignore-scripts --no-audit --no-fund
COPY bpf/ bpf/
COPY addon/ addon/
COPY binding.gyp tsconfig.json tsconfig.build.json ./
COPY src/ src/
COPY test/kernel/fixtures/ test/kernel/fixtures/
# vmlinux.h comes from the build host's BTF; CO-RE makes the object portable.
# The daemon runs compiled JavaScript (dist/): Node's type stripping costs ~17 MB RSS.
RUN make -s -C bpf && npm run build:addon && npm run build:ts \
    && npm prune --omit=dev

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g libmnl0 libnetfilter-conntrack3 \
      iproute2 conntrack \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/flowlogd
COPY --from=build /src/.tools/node/bin/node /usr/local/bin/node
COPY --from=build /src/node_modules node_modules/
COPY --from=build /src/build/Release/flowlogd.node build/Release/flowlogd.node
COPY package.json ./
COPY bin/ bin/
COPY --from=build /src/dist/ dist/
COPY src/ src/
ENTRYPOINT ["/opt/flowlogd/bin/flowlogd"]
CMD ["run"]
