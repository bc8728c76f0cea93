#!/usr/bin/env bash
# The main job, with no cluster: create a local key store, seal the example Secret, validate the
# SealedSecret offline (as CI would), unseal it back and compare with the input; then lint the
# example GitOps repository with the built-in policies, as CI would.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p sealgate-cli
sealgate=target/release/sealgate
if [ -n "${CARGO_TARGET_DIR:-}" ]; then sealgate="$CARGO_TARGET_DIR/release/sealgate"; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SEALGATE_KEYS_DIR="$work/keys"   # a throwaway key store; the default is ~/.config/sealgate/keys

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step sealgate keys init
"$sealgate" keys init

step sealgate seal -f examples/secret.yaml -w sealed.yaml
"$sealgate" seal -f examples/secret.yaml -w "$work/sealed.yaml"
cat "$work/sealed.yaml"

step sealgate validate sealed.yaml
"$sealgate" validate "$work/sealed.yaml"

step sealgate validate --decrypt sealed.yaml
"$sealgate" validate --decrypt "$work/sealed.yaml"

step sealgate unseal -f sealed.yaml
"$sealgate" unseal -f "$work/sealed.yaml" -w "$work/unsealed.yaml"
cat "$work/unsealed.yaml"

step "sealgate seal --value-format kubeseal (Bitnami-compatible values) and unseal"
"$sealgate" seal --value-format kubeseal -f examples/secret.yaml | "$sealgate" unseal -w "$work/unsealed-kubeseal.yaml"

want="password: $(printf %s correct-horse-battery-staple | base64)"
grep -qF "$want" "$work/unsealed.yaml" && grep -qF "$want" "$work/unsealed-kubeseal.yaml"
printf '\nok: both formats round-trip to the original values\n'

step "sealgate lint examples/gitops/apps/shop   # the compliant app"
"$sealgate" lint examples/gitops/apps/shop

step "sealgate lint examples/gitops             # the legacy app breaks several policies: exit code 1"
if "$sealgate" lint examples/gitops; then
  echo "expected findings in apps/legacy" >&2
  exit 1
else
  code=$?
  [ "$code" -eq 1 ] || exit "$code"
  printf '\nok: lint found the violations (exit code %s)\n' "$code"
fi

step "sealgate policy verify policies/          # the built-in policies' gator suites"
"$sealgate" policy verify policies/ | tail -n 1
