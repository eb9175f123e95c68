/* bench_report.h - the machine-readable line of one benchmark figure.
 *
 * Besides its own human-readable tables, every benchmark prints one line per
 * figure on stdout:
 *
 *   BENCH|<bench>|<figure>|<value>|<unit>|<baseline>|<ratio>|<goal>|<result>
 *
 * bench/run.sh collects these lines from every benchmark into the report
 * (BENCH.md); the format and its rules are written down at the top of
 * run.sh.  A benchmark only calls bench_report(); it knows nothing of the
 * report.
 */
#ifndef SHMA_BENCH_REPORT_H
#define SHMA_BENCH_REPORT_H

#include <math.h>
#include <stdio.h>

/* Print the line of one figure.
 *   bench     the benchmark's short name ("fault", "commit", ...)
 *   figure    what was measured, for a person ('|' is printed as '/')
 *   unit      of value and baseline ("us", "GB/s", "MiB", "pages", ...)
 *   value     the figure
 *   baseline  what it is compared with, measured in the same run (or, where
 *             the figure says so, a published one); NAN: none
 *   op, goal  '<' (ratio <= goal), '>' (ratio >= goal), or 0: no goal, the
 *             figure is information.  The goal applies to value / baseline,
 *             or to value itself when there is no baseline.
 * The result is "ok", "MISSED" or "info". */
static inline void bench_report(const char *bench, const char *figure, const char *unit,
				double value, double baseline, char op, double goal)
{
	double x = isnan(baseline) ? value : value / baseline;
	const char *result = "info";

	if (op == '<')
		result = x <= goal ? "ok" : "MISSED";
	else if (op == '>')
		result = x >= goal ? "ok" : "MISSED";
	printf("BENCH|%s|", bench);
	for (const char *p = figure; *p; p++)
		putchar(*p == '|' || *p == '\n' ? '/' : *p);
	printf("|%.6g|%s|", value, unit);
	if (isnan(baseline))
		printf("-|-|");
	else
		printf("%.6g|%.6g|", baseline, x);
	if (op == '<' || op == '>')
		printf("%s %g|", op == '<' ? "<=" : ">=", goal);
	else
		printf("-|");
	printf("%s\n", result);
}

#endif
