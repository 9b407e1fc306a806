#!/usr/bin/env bash
# Runs the image for real, as the DaemonSet does: host network, read-only root, every
# capability dropped but the ones given (default NET_ADMIN SYS_ADMIN), Docker's default
# seccomp profile, a kubeconfig pointing at the fake API server (src/lab/fake-apiserver.ts)
# that lists the two lab pods and a FelixConfiguration with a 2 s flush. A two-netns lab
# (names k8si-*) sends HTTP through two veths; the script prints /livez, /readyz and the
# records flowlogd wrote. Needs root, docker and the image (scripts/build-image.sh).
#   scripts/image-smoke.sh [IMAGE] [CAP...]     (run under the kernel lock here)
set -u
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${1:-flowlogd:latest}
shift || true
caps=("$@")
[ ${#caps[@]} -gt 0 ] || caps=(NET_ADMIN SYS_ADMIN)
node="$top/.tools/node/bin/node"
[ -x "$node" ] || node=node
ns1=k8si-a ns2=k8si-b
work=$(mktemp -d /tmp/k8si.XXXXXX)
api_pid=
cleanup() {
  docker rm -f k8si-run >/dev/null 2>&1
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null
  ip netns del $ns1 2>/dev/null; ip netns del $ns2 2>/dev/null
  ip link del k8si-va 2>/dev/null; ip link del k8si-vb 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cleanup 2>/dev/null; work=$(mktemp -d /tmp/k8si.XXXXXX)

ip netns add $ns1; ip netns add $ns2
ip link add k8si-va type veth peer name k8si-pa; ip link set k8si-pa netns $ns1
ip link add k8si-vb type veth peer name k8si-pb; ip link set k8si-pb netns $ns2
ip -n $ns1 addr add 10.213.251.2/24 dev k8si-pa; ip -n $ns1 link set k8si-pa up; ip -n $ns1 link set lo up
ip -n $ns2 addr add 10.213.252.2/24 dev k8si-pb; ip -n $ns2 link set k8si-pb up; ip -n $ns2 link set lo up
ip addr add 10.213.251.1/24 dev k8si-va; ip link set k8si-va up
ip addr add 10.213.252.1/24 dev k8si-vb; ip link set k8si-vb up
ip -n $ns1 route add default via 10.213.251.1; ip -n $ns2 route add default via 10.213.252.1
sysctl -qw net.ipv4.conf.k8si-va.forwarding=1 net.ipv4.conf.k8si-vb.forwarding=1

pods='[{"name":"access-6d4b9-x7k2p","generateName":"access-6d4b9-","namespace":"default","ip":"10.213.251.2"},
       {"name":"nginx-5f8c7-q9z4m","generateName":"nginx-5f8c7-","namespace":"web","ip":"10.213.252.2"}]'
"$node" "$top/src/lab/fake-apiserver-main.ts" "$work/kubeconfig" "$pods" >"$work/api.out" 2>&1 &
api_pid=$!
for _ in $(seq 50); do [ -s "$work/kubeconfig" ] && break; sleep 0.1; done
mkdir -p "$work/logs"
args=(); for c in "${caps[@]}"; do args+=(--cap-add "$c"); done
docker run -d --name k8si-run --network host --read-only --cap-drop ALL "${args[@]}" \
  -v "$work/logs":/var/log/calico/flowlogs -v "$work/kubeconfig":/etc/flowlogd/kubeconfig:ro \
  "$image" run --kubeconfig /etc/flowlogd/kubeconfig --node-name node-1 \
  --interfaces 'k8si-v*' --workload-interfaces 'k8si-v*' \
  --metrics-port 19477 --metrics-address 127.0.0.1 >/dev/null
sleep 4
probe() { python3 -c "import urllib.request
try:
  r = urllib.request.urlopen('http://127.0.0.1:19477/$1'); print(r.status, r.read().decode().strip())
except Exception as e: print(getattr(e, 'code', e), getattr(e, 'read', lambda: b'')().decode().strip())"; }
echo "caps: ${caps[*]}"
echo "livez: $(probe livez)"
echo "readyz: $(probe readyz)"
ip netns exec $ns2 timeout 8 python3 -m http.server 8080 --bind 10.213.252.2 >/dev/null 2>&1 &
# Three requests, once the server listens.
ip netns exec $ns1 python3 -c "
import time, urllib.request
done = 0
for _ in range(50):
    try:
        urllib.request.urlopen('http://10.213.252.2:8080/').read(); done += 1
        if done == 3: break
    except OSError: time.sleep(0.2)
" 
sleep 5
docker stop -t 10 k8si-run >/dev/null
docker logs k8si-run 2>&1 | grep -E '"level":(40|50|60)' | cut -c1-300 | head -5
echo "records: $(wc -l <"$work/logs/flows.log")"
python3 - "$work/logs/flows.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("dest_port") == 8080:
        print(r["reporter"], r["source_name"], r["source_namespace"], "->", r["dest_name"], r["dest_namespace"], r["proto"],
              "packets", r["packets_in"], r["packets_out"], "interval", r["end_time"] - r["start_time"])
PY
