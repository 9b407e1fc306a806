#!/usr/bin/env bash
# End to end on a kind cluster: build the image, load it into kind, apply deploy/, run
# an `access` Deployment that calls an `nginx` Service, wait two flushes, and check the
# node's flows.log: records name both pods (by their ReplicaSet prefix), the Service,
# and both reporters (src at the access pod's egress, dst at nginx's ingress).
#
# Runs where kind, docker, kubectl and jq exist and images can be pulled (hosted CI:
# .github/workflows/kind-e2e.yaml, or a workstation). kind cannot be installed on this
# project's own machines. Usage: scripts/kind-e2e.sh (KEEP=1 keeps the cluster).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
cluster=${CLUSTER:-flowlogd-e2e}
image=flowlogd:e2e
flush=10 # seconds

for t in kind docker kubectl jq; do command -v "$t" >/dev/null || { echo "kind-e2e: needs $t" >&2; exit 2; }; done

if ! kind get clusters | grep -qx "$cluster"; then kind create cluster --name "$cluster" --wait 120s; fi
[ -n "${KEEP:-}" ] || trap 'kind delete cluster --name "$cluster"' EXIT
kubectl config use-context "kind-$cluster" >/dev/null

BASE=${BASE:-debian:bookworm-slim} scripts/build-image.sh "$image"
kind load docker-image "$image" --name "$cluster"

kubectl apply -k deploy/
# No Calico (so no FelixConfiguration CRD: logged once, skipped) in a kind cluster;
# the flush interval comes from the environment instead.
kubectl -n flowlogd set image daemonset/flowlogd flowlogd="$image"
kubectl -n flowlogd set env daemonset/flowlogd FELIX_FLOWLOGSFLUSHINTERVAL="$flush"
kubectl -n flowlogd rollout status daemonset/flowlogd --timeout=180s

kubectl create namespace e2e --dry-run=client -o yaml | kubectl apply -f -
kubectl -n e2e apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: { name: nginx }
spec:
  selector: { matchLabels: { app: nginx } }
  template:
    metadata: { labels: { app: nginx } }
    spec:
      containers: [{ name: nginx, image: nginx:1.27-alpine, ports: [{ containerPort: 80 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: nginx }
spec:
  selector: { app: nginx }
  ports: [{ name: http, port: 80, targetPort: 80 }]
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: access }
spec:
  selector: { matchLabels: { app: access } }
  template:
    metadata: { labels: { app: access } }
    spec:
      containers:
        - name: access
          image: busybox:1.36
          command: [sh, -c, 'while true; do wget -q -O /dev/null http://nginx.e2e.svc.cluster.local/ || true; sleep 1; done']
YAML
kubectl -n e2e rollout status deployment/nginx --timeout=180s
kubectl -n e2e rollout status deployment/access --timeout=180s
sleep $((2 * flush + 5))

node=$(kubectl get pods -n e2e -l app=access -o jsonpath='{.items[0].spec.nodeName}')
log=$(mktemp)
docker exec "$node" cat /var/log/calico/flowlogs/flows.log >"$log"
echo "kind-e2e: $(wc -l <"$log") records on $node" >&2
kubectl -n flowlogd get pods -o wide
kubectl -n flowlogd logs daemonset/flowlogd --tail=20 || true

fail=0
check() {
  local what=$1 filter=$2
  if [ "$(jq -c "select($filter)" "$log" | wc -l)" -gt 0 ]; then echo "ok: $what"; else echo "FAIL: $what" >&2; fail=1; fi
}
pair='.source_namespace == "e2e" and (.source_name_aggr | startswith("access-")) and .dest_namespace == "e2e" and (.dest_name_aggr | startswith("nginx-")) and .proto == "tcp" and .dest_port == 80'
check "access -> nginx, reporter src, via the nginx Service" "$pair and .reporter == \"src\" and .dest_service_name == \"nginx\" and .dest_service_namespace == \"e2e\" and .dest_service_port == \"http\""
check "access -> nginx, reporter dst" "$pair and .reporter == \"dst\""
check "both ends are pods (wep)" "$pair and .source_type == \"wep\" and .dest_type == \"wep\""
if [ "$fail" -ne 0 ]; then
  echo "kind-e2e: records seen:" >&2
  jq -c '{source_name_aggr, dest_name_aggr, dest_service_name, reporter, proto, dest_port}' "$log" | sort | uniq -c | head -40 >&2
  exit 1
fi
echo "kind-e2e: passed"
