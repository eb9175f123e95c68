/* pagemap.c - sparse block -> pointer map (see pagemap.h). */
#include "pagemap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

static size_t hash(uint64_t key, size_t cap)
{
	/* Fibonacci hashing: consecutive blocks spread over the table. */
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

void pagemap_init(struct pagemap *pm)
{
	pm->slots = NULL;
	pm->cap = 0;
	pm->len = 0;
}

void pagemap_clear(struct pagemap *pm)
{
	free(pm->slots);
	pagemap_init(pm);
}

static struct pagemap_slot *find(const struct pagemap *pm, uint64_t key)
{
	size_t i;

	if (pm->cap == 0)
		return NULL;
	for (i = hash(key, pm->cap);; i = (i + 1) & (pm->cap - 1)) {
		struct pagemap_slot *s = &pm->slots[i];

		if (!s->val)
			return NULL;
		if (s->key == key)
			return s;
	}
}

void *pagemap_get(const struct pagemap *pm, uint64_t key)
{
	struct pagemap_slot *s = find(pm, key);

	return s ? s->val : NULL;
}

static void insert(struct pagemap_slot *slots, size_t cap, uint64_t key, void *val)
{
	size_t i = hash(key, cap);

	while (slots[i].val && slots[i].key != key)
		i = (i + 1) & (cap - 1);
	slots[i].key = key;
	slots[i].val = val;
}

static int grow(struct pagemap *pm)
{
	size_t ncap = pm->cap ? pm->cap * 2 : 16;
	struct pagemap_slot *ns = calloc(ncap, sizeof(*ns));
	size_t i;

	if (!ns)
		return -ENOMEM;
	for (i = 0; i < pm->cap; i++)
		if (pm->slots[i].val)
			insert(ns, ncap, pm->slots[i].key, pm->slots[i].val);
	free(pm->slots);
	pm->slots = ns;
	pm->cap = ncap;
	return 0;
}

int pagemap_set(struct pagemap *pm, uint64_t key, void *val)
{
	struct pagemap_slot *s = find(pm, key);

	if (s) {
		s->val = val;
		return 0;
	}
	/* keep the load factor <= 1/2 */
	if ((pm->len + 1) * 2 > pm->cap) {
		int err = grow(pm);

		if (err)
			return err;
	}
	insert(pm->slots, pm->cap, key, val);
	pm->len++;
	return 0;
}

void *pagemap_del(struct pagemap *pm, uint64_t key)
{
	struct pagemap_slot *s = find(pm, key);
	size_t i, j, mask = pm->cap - 1;
	void *val;

	if (!s)
		return NULL;
	val = s->val;
	/* Backward-shift: move later members of the probe run into the hole so
	 * lookups never stop early; no tombstones. */
	i = (size_t)(s - pm->slots);
	for (j = (i + 1) & mask; pm->slots[j].val; j = (j + 1) & mask) {
		size_t home = hash(pm->slots[j].key, pm->cap);

		/* slot j may move to i iff home is not cyclically in (i, j] */
		bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);

		if (!in_range) {
			pm->slots[i] = pm->slots[j];
			i = j;
		}
	}
	pm->slots[i].val = NULL;
	pm->len--;
	return val;
}

bool pagemap_next(const struct pagemap *pm, size_t *pos, uint64_t *key, void **val)
{
	for (; *pos < pm->cap; (*pos)++) {
		const struct pagemap_slot *s = &pm->slots[*pos];

		if (s->val) {
			*key = s->key;
			*val = s->val;
			(*pos)++;
			return true;
		}
	}
	return false;
}
