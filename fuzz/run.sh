#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 10), the corpus seeded from the repository's
# samples. .ci/run: `fuzz/run.sh 10`; a long run: `fuzz/run.sh 3600`. Needs cargo-fuzz
# (`cargo install --locked cargo-fuzz`) and nightly rustc, or RUSTC_BOOTSTRAP=1 on stable.
# FUZZ_TARGETS="compat manifest" runs only those.
# A crash leaves its input in fuzz/artifacts/TARGET/ and fails this script; make it a
# regression test in the crate whose parser crashed.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
toolchain=()
if (cd / && rustup run nightly rustc --version) >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
# std::backtrace captures (anyhow errors inside regorus's parser) cost the compat target most of
# its executions under ASan; panics still print their backtrace (RUST_BACKTRACE).
export RUST_LIB_BACKTRACE=0
corpus="${FUZZ_CORPUS:-$PWD/corpus}"
mkdir -p "$corpus"/{manifest,kubeseal,age_value,admission,compat,cel}
# Seeds: the example repo and policy samples (manifests), recorded reviews, the templates' Rego.
seed() { # seed DIR FILE...: each file under a name made from its path (names repeat)
  local dir="$1" f
  shift
  for f in "$@"; do cp -f "$f" "$corpus/$dir/$(echo "${f#../}" | tr / _)"; done
}
mapfile -t yaml < <(find ../examples ../policies -name '*.yaml')
seed manifest "${yaml[@]}"
seed admission ../examples/admission/*.json
mapfile -t templates < <(find ../policies -name template.yaml)
seed compat "${templates[@]}"
# CEL: every expression of the ValidatingAdmissionPolicy corpus, one per file.
n=0
while IFS= read -r e; do
  n=$((n + 1))
  printf '%s' "$e" > "$corpus/cel/expression-$n"
done < <(sed -n -E 's/^ *-? *(expression|messageExpression|valueExpression): *"(.*)"$/\2/p' \
  ../tests/real_cluster/testdata/vap/kubernetes-docs.yaml | sed 's/\\"/"/g')
cargo "${toolchain[@]}" fuzz build -O
for target in ${FUZZ_TARGETS:-manifest kubeseal age_value admission compat cel}; do
  cargo "${toolchain[@]}" fuzz run -O "$target" "$corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -a -E '^(stat::number_of_executed_units|Done|==[0-9]+==|SUMMARY)|panicked' \
    | sed "s/^/$target: /"
done
