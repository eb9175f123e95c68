/* why.h - the reason an operation of the worker tools refused its input,
 * written into the caller's buffer (ops.c, jobs.c). */
#ifndef SHMA_WORKER_WHY_H
#define SHMA_WORKER_WHY_H

#include <stddef.h>

/* Format the reason into why (if not NULL and whylen > 0) and return -EINVAL. */
int why_invalid(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
