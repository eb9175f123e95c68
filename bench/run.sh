#!/usr/bin/env bash
# Run every benchmark of a build directory in turn, with default arguments,
# and write the report of their figures.
#
#   bench/run.sh BUILD_DIR [REPORT]
#
# REPORT defaults to BUILD_DIR/BENCH.md (make bench: $(BUILD)/BENCH.md, or
# BENCH_REPORT=path).  The report is a Markdown table of every figure of
# every benchmark; it is printed at the end as well.  Benchmarks print ratios
# against baselines measured in the same run; a missed goal is reported in
# their output and in the report, not as a failure.  Exits non-zero if a
# benchmark failed (non-zero exit or death by a signal) or none was found.
#
# The convention: a benchmark is any executable BUILD_DIR/bench/bench_*
# (from bench/bench_*.c: the Makefile builds them all).  Besides its own
# human-readable output, it prints one line per figure on stdout, through
# bench_report() of bench/bench_report.h:
#
#   BENCH|<bench>|<figure>|<value>|<unit>|<baseline>|<ratio>|<goal>|<result>
#
#   bench     the benchmark's short name (bench_fault: "fault")
#   figure    what was measured, in words (no '|')
#   value     a number (printf %g), in unit
#   unit      "us", "GB/s", "MiB", "pages", ...
#   baseline  what value is compared with, in the same unit, measured in the
#             same run (unless the figure says otherwise); "-" if none
#   ratio     value / baseline; "-" if there is no baseline
#   goal      "<= X" or ">= X" (from the issue), applied to the ratio, or to
#             the value when there is no baseline; "-" for information
#   result    ok | MISSED | info
#
# These lines go to the report, not to the terminal; everything else a
# benchmark prints is shown as it comes.  A benchmark that failed gets a row
# saying so (with whatever figures it printed before).
set -u
build=${1:?usage: run.sh BUILD_DIR [REPORT]}
report=${2:-$build/BENCH.md}
root=$(cd "$(dirname "$0")/.." && pwd)

lines=$(mktemp) || exit 1
trap 'rm -f "$lines"' EXIT
# line-buffered output when the benchmarks' stdout is a pipe, if we can
linebuf=()
command -v stdbuf >/dev/null && linebuf=(stdbuf -oL)

ran=0 failures=()
for b in "$build"/bench/bench_*; do
	{ [ -f "$b" ] && [ -x "$b" ]; } || continue
	case "$b" in *.o|*.d) continue;; esac
	name=$(basename "$b")
	echo "=== $name"
	start=$SECONDS
	"${linebuf[@]}" "$b" | awk -v out="$lines" \
		'/^BENCH\|/ { print >> out; fflush(out); next } { print; fflush() }'
	rc=${PIPESTATUS[0]}
	ran=$((ran + 1))
	if [ "$rc" -ne 0 ]; then
		echo "--- FAILED: $name (exit $rc)"
		failures+=("$name")
		echo "BENCH|${name#bench_}|(the benchmark failed: exit $rc)|-|-|-|-|-|FAILED" >>"$lines"
	fi
	echo "--- $name: $((SECONDS - start)) s"
	echo
done

if [ "$ran" -eq 0 ]; then
	echo "bench: no benchmarks in $build/bench" >&2
	exit 1
fi

# The report: a header saying where the figures come from, then the table.
{
	echo "# shma benchmark report"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); checkout: $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown); build: \`$build\`"
	echo "- machine: $(nproc) CPUs, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
	echo "- ratio = value / baseline, both measured in the same run (unless the figure names a published baseline);"
	echo "  a goal applies to the ratio, or to the value where there is no baseline. A MISSED goal is reported, not a failure."
	echo
	awk -F'|' '
	# integers as they are, else 3 significant digits; never an exponent
	function num(s,   v, a) {
		if (s == "-" || s == "") return "-"
		v = s + 0; a = v < 0 ? -v : v
		if (a >= 100 || v == int(v)) return sprintf("%.0f", v)
		if (a >= 10) return sprintf("%.1f", v)
		if (a >= 1 || a == 0) return sprintf("%.2f", v)
		return sprintf("%.3g", v)
	}
	# ratios: 3 decimals below 10, so a near miss shows (1.201 against <= 1.2)
	function ratio(s,   v) {
		if (s == "-" || s == "") return "-"
		v = s + 0
		return v >= 10 || v < 0.1 ? num(s) : sprintf("%.3f", v)
	}
	BEGIN {
		print "| benchmark | figure | value | unit | baseline | ratio | goal | result |"
		print "|---|---|---:|---|---:|---:|---|---|"
	}
	$1 == "BENCH" && NF == 9 {
		res = $9 == "info" ? "(info)" : $9
		printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, num($4), $5, num($6), ratio($7), $8, res
		n[$9]++; rows++
	}
	$1 == "BENCH" && NF != 9 { bad++ }
	END {
		printf "\n%d figures: %d ok, %d MISSED, %d information", rows - n["FAILED"], n["ok"], n["MISSED"], n["info"]
		if (n["FAILED"]) printf "; %d benchmark(s) FAILED", n["FAILED"]
		if (bad) printf "; %d malformed BENCH lines left out", bad
		print ""
	}' "$lines"
} >"$report" || { echo "bench: cannot write $report" >&2; exit 1; }

echo "=== report ($report)"
echo
cat "$report"
echo
[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "bench: $ran run, ${#failures[@]} failed; report in $report"
[ ${#failures[@]} -eq 0 ]
