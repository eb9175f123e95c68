#!/usr/bin/env bash
# Run every test binary of a build directory; print one summary line.
#   tests/run-tests.sh BUILD_DIR
# A passing test prints one line, a failing one its whole output (and its
# end again before the summary).
# Environment: SHMA_SAN=asan|ubsan|tsan (sanitizer options), SHMA_VALGRIND=1
# (unit tests under valgrind memcheck), SHMA_TEST_TIMEOUT (seconds per binary,
# plus the run time of a stress test), SHMA_STRESS=1 (stress tests run long:
# make check-stress), SHMA_BANK_SECONDS (the bank test's run time: 4 s, or
# 60 s with SHMA_STRESS=1).
set -u
build=${1:?usage: run-tests.sh BUILD_DIR}
timeout_s=${SHMA_TEST_TIMEOUT:-300}

# libshm installs its own SIGSEGV handler: the sanitizers must let it, and must
# not claim SIGSEGV themselves (crash tests expect a real death by SIGSEGV).
export ASAN_OPTIONS=${ASAN_OPTIONS:-allow_user_segv_handler=1:handle_segv=0:handle_sigbus=0:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# TSan: libshm's fault handler allocates (calloc for a new page) inside
# SIGSEGV; faults are synchronous, so this is safe unless an asynchronous
# handler touches mapped memory in the middle of malloc (docs/VIRTMEM.md), so
# report_signal_unsafe=0.  A block remapped while another thread reads it
# would look to TSan like a race; libshm tells TSan it is none
# (util_map_fixed).  tsan.supp: libzmq, which is not built with TSan.
here=$(cd "$(dirname "$0")" && pwd)
export TSAN_OPTIONS=${TSAN_OPTIONS:-allow_user_segv_handler=1:handle_segv=0:handle_sigbus=0:halt_on_error=1:second_deadlock_stack=1:history_size=7:report_signal_unsafe=0:suppressions=$here/tsan.supp}

wrap=()
if [ "${SHMA_VALGRIND:-}" = 1 ]; then
	wrap=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
	      --show-leak-kinds=definite)
fi

passed=0 failed=0 failures=()
limit=$timeout_s # of the next run
# Each test's output goes to a file (not a pipe: a process a test leaves
# behind cannot hold the run up).  A failed test's output is shown whole,
# and its end again in the summary, so that what failed stands out of the
# deliberate crashes and error messages passing tests print.
logs=$(mktemp -d "${TMPDIR:-/tmp}/shma-tests.XXXXXX") || exit 1
trap 'rm -rf "$logs"' EXIT
log_of() { echo "$logs/${1//\//_}.log"; }
run() { # name, command...
	local name=$1 log rc t0 tenths took; shift
	log=$(log_of "$name")
	t0=$(date +%s%N)
	timeout -k 10 "$limit" "$@" > "$log" 2>&1
	rc=$?
	tenths=$(( ($(date +%s%N) - t0) / 100000000 ))
	took="$((tenths / 10)).$((tenths % 10)) s"
	if [ "$rc" -ne 0 ] || [ "${SHMA_TEST_VERBOSE:-}" = 1 ]; then
		echo "=== $name"
		cat "$log"
	fi
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
		echo "ok     $name ($took)"
	else
		echo "--- FAILED: $name (exit $rc$([ "$rc" -eq 124 ] && echo ": timed out"), $took)"
		failed=$((failed + 1)); failures+=("$name")
	fi
}

for t in "$build"/tests/unit/test_*; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	case "$t" in *.o|*.d) continue;; esac
	run "unit/$(basename "$t")" "${wrap[@]}" "$t"
done
# Integration tests start their own broker (tests/lib/harness.c).  Not under
# TSan: they fork children that start threads (ZeroMQ's, read-ahead's) in a
# copy of a threaded process, which TSan does not support; the threads of
# libshm itself are covered by the unit tests.
# Nor under valgrind: it does not follow the private remaps of a shared
# file mapping that broker-backed arrays are made of (reads and writes there
# are reported invalid); virtmem's own tests run under it.
skip_integ=
if [ "${SHMA_SAN:-}" = tsan ]; then
	skip_integ="TSan"
	# ... but the broker they talk to can run under it: the plain build's
	# integration and stress tests run against this build's broker, so
	# its threads (commit fills, the copies made while the store syncs)
	# are checked under the whole suite.  SHMA_TSAN_TESTS: the plain build.
	plain=${SHMA_TSAN_TESTS:-build}
	if [ -x "$build/shma-broker" ] && [ -d "$plain/tests/integration" ]; then
		for t in "$plain"/tests/integration/test_* "$plain"/tests/stress/test_*; do
			[ -x "$t" ] && [ -f "$t" ] || continue
			case "$t" in *.o|*.d|*/test_demo) continue;; esac
			limit=$((timeout_s * 2))
			run "tsan-broker/$(basename "$t")" env SHMA_BROKER="$build/shma-broker" \
				SHMA_BROKER_SANITIZED=tsan \
				SHMA_BANK_SECONDS="${SHMA_BANK_SECONDS:-4}" "$t"
		done
		limit=$timeout_s
	else
		echo "(no plain build in $plain: the TSan broker is not run under the integration tests)"
	fi
fi
[ "${SHMA_VALGRIND:-}" = 1 ] && skip_integ="valgrind"
[ -n "$skip_integ" ] && echo "(integration tests skipped under $skip_integ)"
for t in "$build"/tests/integration/test_*; do
	[ -n "$skip_integ" ] && break
	[ -x "$t" ] && [ -f "$t" ] || continue
	case "$t" in *.o|*.d) continue;; esac
	run "integration/$(basename "$t")" "${wrap[@]}" "$t"
done
# Stress tests (the bank test: transfers under SIGKILL of workers and of the
# broker) run for a few seconds in every suite and for a minute with
# SHMA_STRESS=1 (make check-stress).  Skipped under TSan and valgrind like the
# integration tests: they are multi-process tests against a real broker.
if [ "${SHMA_STRESS:-}" = 1 ]; then
	export SHMA_BANK_SECONDS=${SHMA_BANK_SECONDS:-60}
else
	export SHMA_BANK_SECONDS=${SHMA_BANK_SECONDS:-4}
fi
secs=${SHMA_BANK_SECONDS%%[!0-9]*} # whole seconds, for the time limit
limit=$((timeout_s + ${secs:-0}))
[ -n "$skip_integ" ] && echo "(stress tests skipped under $skip_integ)"
for t in "$build"/tests/stress/test_*; do
	[ -n "$skip_integ" ] && break
	[ -x "$t" ] && [ -f "$t" ] || continue
	case "$t" in *.o|*.d) continue;; esac
	run "stress/$(basename "$t")" "$t"
done
limit=$timeout_s
# Crash tests fork the program that must die and check how it died; they are
# not run under valgrind (which reports the deliberate crashes).
for t in "$build"/tests/crash/crash_*; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	case "$t" in *.o|*.d) continue;; esac
	run "crash/$(basename "$t")" "$t"
done

for name in "${failures[@]}"; do
	echo "--- the end of $name's output:"
	tail -n 30 "$(log_of "$name")"
done
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
