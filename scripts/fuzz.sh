#!/usr/bin/env bash
# Fuzz herald's input parsers and SSE encoder with cargo fuzz (libFuzzer).
#
#   scripts/fuzz.sh                    # replay fuzz/regressions, then each target 60 s
#   scripts/fuzz.sh 600                # 10 minutes per target
#   scripts/fuzz.sh 0                  # only replay the kept inputs (fast, for CI)
#   scripts/fuzz.sh 600 batch_json     # some targets only
#
# Targets (fuzz/fuzz_targets/): sse_roundtrip, channel_name, event_type,
# last_event_id, subscribe_query, batch_json, h1_head. Every input that ever made one
# fail is kept in fuzz/regressions/<target>/ and replayed first. A new
# crash is written to fuzz/artifacts/<target>/: copy it into
# fuzz/regressions/<target>/ once fixed.
#
# Needs cargo-fuzz (installed from crates.io if missing) and a C++ compiler.
# cargo fuzz needs nightly flags; on a stable toolchain RUSTC_BOOTSTRAP=1
# allows them. Targets run one at a time, one process each (the machine is
# shared).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "regressions/$target"
  echo "== $target: replaying fuzz/regressions/$target"
  cargo fuzz run "$target" "regressions/$target" -- -runs=0
  if [ "$seconds" -gt 0 ]; then
    echo "== $target: fuzzing for ${seconds}s"
    # corpus/ first: libFuzzer writes new inputs to the first directory only.
    cargo fuzz run "$target" "corpus/$target" "regressions/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1
  fi
done
