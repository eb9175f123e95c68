#!/usr/bin/env bash
# Run every libFuzzer harness built in BUILD_DIR/tests/fuzz/ for SECONDS each.
#
#   tests/fuzz/run.sh [BUILD_DIR [SECONDS]]      (default build/fuzz 30)
#
# Each harness starts from its seed corpus, tests/fuzz/corpus/<name>/ (read
# only), and keeps what it finds in BUILD_DIR/corpus/<name>/, so later runs
# go on from there.  A crash, a sanitizer report, a leak or a timeout stops
# that harness and leaves the input in BUILD_DIR/crashes/<name>/; the others
# still run, and the script exits 1.  Replay an input with
#   BUILD_DIR/tests/fuzz/<name> FILE
# Extra libFuzzer flags may be passed in FUZZ_FLAGS.  Temporary files go
# under a private directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=${1:-build/fuzz}
secs=${2:-30}
bins=("$build"/tests/fuzz/fuzz_*)
[ -x "${bins[0]}" ] || { echo "fuzz: no harness in $build/tests/fuzz (make fuzz builds them)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shma-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export TMPDIR=$tmp
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for bin in "${bins[@]}"; do
	[ -x "$bin" ] || continue
	case $bin in *.o | *.d) continue ;; esac
	name=$(basename "$bin")
	name=${name#fuzz_}
	corpus=$build/corpus/$name
	crashes=$build/crashes/$name
	log=$build/logs/$name.log
	mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
	seeds=()
	[ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
	echo "fuzz: $name for ${secs}s (log $log)"
	# shellcheck disable=SC2086
	if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
		-print_final_stats=1 -artifact_prefix="$crashes/" ${FUZZ_FLAGS:-} \
		"$corpus" "${seeds[@]}" >"$log" 2>&1; then
		grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | sed "s/^/fuzz: $name: /" || true
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" |
			sed "s/^/fuzz: $name: /" || true
	else
		echo "fuzz: $name FAILED; input(s) in $crashes/:" >&2
		ls "$crashes" >&2 || true
		grep -E 'ERROR: |SUMMARY: |runtime error: |fuzz_[a-z]+: |^    #[0-9]' "$log" | head -30 >&2 || true
		failed+=("$name")
	fi
done
if [ ${#failed[@]} -ne 0 ]; then
	echo "fuzz: failed: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz: all harnesses ran ${secs}s without a finding"
