/* balloc.c - power-of-two runs of 4 KiB units (see balloc.h). */
#include "balloc.h"

#include <errno.h>
#include <stdlib.h>

int balloc_init(struct balloc *ba, size_t nunits)
{
	ba->nunits = nunits;
	ba->used = 0;
	ba->hint = 0;
	ba->bitmap = calloc((nunits + 63) / 64 + 1, sizeof(uint64_t));
	return ba->bitmap ? 0 : -ENOMEM;
}

void balloc_fini(struct balloc *ba)
{
	free(ba->bitmap);
	ba->bitmap = NULL;
}

bool balloc_is_free(const struct balloc *ba, size_t u, size_t n)
{
	if (u + n > ba->nunits || u + n < u)
		return false;
	while (n) {
		size_t bit = u % 64, k = 64 - bit < n ? 64 - bit : n;
		uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << bit;

		if (ba->bitmap[u / 64] & mask)
			return false;
		u += k;
		n -= k;
	}
	return true;
}

/* Move the hint past units in use. */
static void hint_advance(struct balloc *ba)
{
	size_t u = ba->hint;

	while (u < ba->nunits) {
		uint64_t w = ba->bitmap[u / 64] >> (u % 64);

		if (w == ~0ull >> (u % 64)) { /* rest of this word in use */
			u = (u / 64 + 1) * 64;
			continue;
		}
		if (!(w & 1))
			break;
		u++;
	}
	ba->hint = u < ba->nunits ? u : ba->nunits;
}

void balloc_mark(struct balloc *ba, size_t u, size_t n, bool used)
{
	size_t first = u;

	if (used)
		ba->used += n;
	else
		ba->used -= n;
	while (n) {
		size_t bit = u % 64, k = 64 - bit < n ? 64 - bit : n;
		uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << bit;

		if (used)
			ba->bitmap[u / 64] |= mask;
		else
			ba->bitmap[u / 64] &= ~mask;
		u += k;
		n -= k;
	}
	if (!used && first < ba->hint)
		ba->hint = first;
	else if (used && first <= ba->hint)
		hint_advance(ba);
}

bool balloc_alloc(struct balloc *ba, size_t n, size_t *unit)
{
	size_t ncand, c;

	if (n == 0 || (n & (n - 1)) || n > ba->nunits || ba->used + n > ba->nunits)
		return false;
	/* First fit over n-aligned candidates; none below the hint is free. */
	ncand = ba->nunits / n;
	for (c = ba->hint / n; c < ncand; c++) {
		size_t u = c * n;

		if (!balloc_is_free(ba, u, n))
			continue;
		balloc_mark(ba, u, n, true);
		*unit = u;
		return true;
	}
	return false;
}
