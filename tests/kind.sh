#!/usr/bin/env bash
# The end-to-end test against a real cluster (kind or k3d), with the real image and deploy/:
#   SEALGATE_IT=1 cargo test -p sealgate-e2e --test cluster -- --ignored     (runs this script)
#   tests/kind.sh                                                            (or directly)
# Needs docker, kind (or k3d with CLUSTER_TOOL=k3d) and kubectl. It creates the cluster
# `sealgate-e2e`, builds and loads the image, installs deploy/, seals a Secret through the API
# server's service proxy, waits for the controller to unseal it, and checks that the webhook
# denies a human's change and admits the same change by a GitOps identity. KEEP=1 keeps the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${CLUSTER_TOOL:-kind}
cluster=sealgate-e2e
image=ghcr.io/sealgate/sealgate:0.1.0
sealgate=${SEALGATE:-target/debug/sealgate}

cleanup() { [ -n "${KEEP:-}" ] || { if [ "$tool" = k3d ]; then k3d cluster delete "$cluster"; else kind delete cluster --name "$cluster"; fi; } >/dev/null 2>&1 || true; }
trap cleanup EXIT

cargo build -q -p sealgate-cli
docker build -t "$image" .
if [ "$tool" = k3d ]; then
  k3d cluster create "$cluster" --wait
  k3d image import "$image" -c "$cluster"
else
  kind create cluster --name "$cluster" --wait 120s
  kind load docker-image "$image" --name "$cluster"
fi

kubectl apply -k deploy
kubectl -n sealgate-system rollout status deploy/sealgate-controller --timeout=180s
kubectl -n sealgate-system rollout status deploy/sealgate-webhook --timeout=180s

kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace shop sealgate.dev/governed=true --overwrite

work=$(mktemp -d)
"$sealgate" cert --controller kube:// > "$work/cert.pem"
"$sealgate" seal --controller kube:// -f examples/secret.yaml -w "$work/sealed.yaml"
"$sealgate" validate --controller kube:// "$work/sealed.yaml"

# A human may not change a governed namespace; the GitOps agent's identity may. Both are
# impersonated with system:masters, so RBAC admits them and the webhook alone decides.
if kubectl apply -f "$work/sealed.yaml" --as alice@example.com --as-group system:masters 2>"$work/denied.txt"; then
  echo "FAIL: a human's change was admitted" >&2; exit 1
fi
grep -q "gitops-identity" "$work/denied.txt"
kubectl apply -f "$work/sealed.yaml" --as system:serviceaccount:flux-system:kustomize-controller --as-group system:masters

for _ in $(seq 60); do
  if kubectl -n shop get secret db-credentials >/dev/null 2>&1; then break; fi
  sleep 2
done
test "$(kubectl -n shop get secret db-credentials -o jsonpath='{.data.password}' | base64 -d)" = correct-horse-battery-staple
kubectl -n shop get sealedsecret db-credentials -o jsonpath='{.status.conditions[0].status}' | grep -q True
echo "ok: sealed, admitted for the agent only, unsealed by the controller"
