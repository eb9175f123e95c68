#!/usr/bin/env bash
# Run every benchmark of a build directory in turn, with default arguments.
#   bench/run.sh BUILD_DIR
# Benchmarks print ratios against baselines measured in the same run; a missed
# goal is reported in their output, not as a failure.  Exits non-zero if a
# benchmark failed (non-zero exit or death by a signal) or none was found.
set -u
build=${1:?usage: run.sh BUILD_DIR}

ran=0 failures=()
for b in "$build"/bench/bench_*; do
	{ [ -f "$b" ] && [ -x "$b" ]; } || continue
	case "$b" in *.o|*.d) continue;; esac
	name=$(basename "$b")
	echo "=== $name"
	"$b"
	rc=$?
	ran=$((ran + 1))
	if [ "$rc" -ne 0 ]; then
		echo "--- FAILED: $name (exit $rc)"
		failures+=("$name")
	fi
	echo
done

if [ "$ran" -eq 0 ]; then
	echo "bench: no benchmarks in $build/bench" >&2
	exit 1
fi
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "bench: $ran run, ${#failures[@]} failed"
[ ${#failures[@]} -eq 0 ]
