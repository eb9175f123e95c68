/* test_pagemap.c - the sparse block -> pointer map (internal module). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "pagemap.h"

/* Distinct non-NULL values to store. */
static char vals[4096];

static void test_get_set_del(void **state)
{
	struct pagemap pm;

	(void)state;
	pagemap_init(&pm);
	assert_null(pagemap_get(&pm, 0));
	assert_int_equal(pagemap_set(&pm, 7, &vals[7]), 0);
	assert_int_equal(pagemap_set(&pm, UINT64_MAX, &vals[1]), 0);
	assert_int_equal(pagemap_set(&pm, 0, &vals[0]), 0);
	assert_int_equal(pagemap_len(&pm), 3);
	assert_ptr_equal(pagemap_get(&pm, 7), &vals[7]);
	assert_ptr_equal(pagemap_get(&pm, UINT64_MAX), &vals[1]);
	assert_ptr_equal(pagemap_get(&pm, 0), &vals[0]);
	assert_null(pagemap_get(&pm, 8));

	/* replacing keeps the count */
	assert_int_equal(pagemap_set(&pm, 7, &vals[70]), 0);
	assert_int_equal(pagemap_len(&pm), 3);
	assert_ptr_equal(pagemap_get(&pm, 7), &vals[70]);

	assert_ptr_equal(pagemap_del(&pm, 7), &vals[70]);
	assert_null(pagemap_del(&pm, 7));
	assert_null(pagemap_get(&pm, 7));
	assert_int_equal(pagemap_len(&pm), 2);
	pagemap_clear(&pm);
	assert_int_equal(pagemap_len(&pm), 0);
	assert_null(pagemap_get(&pm, 0));
}

/* Many keys, deleted in an order that exercises backward-shift deletion in
 * long probe runs: every survivor must stay reachable. */
static void test_many_with_deletes(void **state)
{
	const uint64_t n = 3000;
	struct pagemap pm;
	uint64_t k;

	(void)state;
	pagemap_init(&pm);
	for (k = 0; k < n; k++)
		assert_int_equal(pagemap_set(&pm, k * 512, &vals[k % 4096]), 0);
	for (k = 0; k < n; k += 3)
		assert_ptr_equal(pagemap_del(&pm, k * 512), &vals[k % 4096]);
	for (k = 0; k < n; k++) {
		void *v = pagemap_get(&pm, k * 512);

		if (k % 3 == 0)
			assert_null(v);
		else
			assert_ptr_equal(v, &vals[k % 4096]);
	}
	assert_int_equal(pagemap_len(&pm), n - (n + 2) / 3);
	pagemap_clear(&pm);
}

static void test_iterate_each_once(void **state)
{
	const uint64_t n = 1000;
	struct pagemap pm;
	unsigned char *seen = calloc(n, 1);
	uint64_t key, k, count = 0;
	size_t pos = 0;
	void *val;

	(void)state;
	assert_non_null(seen);
	pagemap_init(&pm);
	/* empty map: nothing visited */
	assert_false(pagemap_next(&pm, &pos, &key, &val));
	for (k = 0; k < n; k++)
		assert_int_equal(pagemap_set(&pm, k * 7919, &vals[k]), 0);
	for (k = 0; k < n; k += 2)
		pagemap_del(&pm, k * 7919);
	pos = 0;
	while (pagemap_next(&pm, &pos, &key, &val)) {
		assert_int_equal(key % 7919, 0);
		k = key / 7919;
		assert_true(k < n && k % 2 == 1);
		assert_ptr_equal(val, &vals[k]);
		assert_int_equal(seen[k], 0);
		seen[k] = 1;
		count++;
	}
	assert_int_equal(count, n / 2);
	free(seen);
	pagemap_clear(&pm);
}

static void test_clear_then_reuse(void **state)
{
	struct pagemap pm;

	(void)state;
	pagemap_init(&pm);
	for (uint64_t k = 0; k < 100; k++)
		assert_int_equal(pagemap_set(&pm, k, &vals[k]), 0);
	pagemap_clear(&pm);
	assert_int_equal(pagemap_len(&pm), 0);
	for (uint64_t k = 0; k < 100; k++)
		assert_null(pagemap_get(&pm, k));
	assert_int_equal(pagemap_set(&pm, 5, &vals[5]), 0);
	assert_ptr_equal(pagemap_get(&pm, 5), &vals[5]);
	pagemap_clear(&pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_set_del),
		cmocka_unit_test(test_many_with_deletes),
		cmocka_unit_test(test_iterate_each_once),
		cmocka_unit_test(test_clear_then_reuse),
	};

	return cmocka_run_group_tests_name("pagemap", tests, NULL, NULL);
}
