/* why.c - see why.h. */
#include "why.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

int why_invalid(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}
