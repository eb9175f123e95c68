/* dtype.c - NumPy type strings (see dtype.h). */
#include "dtype.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool size_ok(char kind, unsigned size)
{
	switch (kind) {
	case 'b':
		return size == 1;
	case 'i':
	case 'u':
		return size == 1 || size == 2 || size == 4 || size == 8;
	case 'f':
		return size == 2 || size == 4 || size == 8;
	case 'c':
		return size == 8 || size == 16;
	default:
		return false;
	}
}

int dtype_parse(const char *s, struct dtype *dt, const char **why)
{
	char order, kind;
	unsigned size = 0;
	size_t i, len = strlen(s);

	if (len < 3 || len > 4) {
		*why = "a type string is byte order, kind and size, e.g. \"<f8\"";
		return -EINVAL;
	}
	order = s[0];
	kind = s[1];
	if (!strchr("<>|=", order)) {
		*why = "byte order must be one of < > | =";
		return -EINVAL;
	}
	if (!strchr("biufc", kind)) {
		*why = "kind must be one of b i u f c";
		return -EINVAL;
	}
	for (i = 2; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			*why = "item size must be decimal digits";
			return -EINVAL;
		}
		size = size * 10 + (unsigned)(s[i] - '0');
	}
	if (!size_ok(kind, size)) {
		*why = "unsupported item size for this kind";
		return -EINVAL;
	}
	if (size > 1 && order == '|') {
		*why = "byte order '|' is only for 1-byte types";
		return -EINVAL;
	}
	dt->kind = kind;
	dt->size = size;
	if (order == '=')
		order = __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? '>' : '<';
	dt->big_endian = size > 1 && order == '>';
	snprintf(dt->str, sizeof(dt->str), "%c%c%u", size == 1 ? '|' : order, kind, size);
	return 0;
}
