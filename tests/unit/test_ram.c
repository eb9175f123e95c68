/* test_ram.c - local RAM: limit, alignment, reuse, memory given back. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ram.h"
#include "shma.h"

static void test_new_rejects_tiny_limit(void **state)
{
	shma_ram *ram = NULL;

	(void)state;
	assert_int_equal(shma_ram_new(0, &ram), -EINVAL);
	assert_int_equal(shma_ram_new(4095, &ram), -EINVAL);
	assert_null(ram);
	assert_int_equal(shma_ram_new(4096 + 100, &ram), 0);
	assert_int_equal(ram->limit, 4096); /* rounded down */
	assert_int_equal(shma_ram_destroy(&ram), 0);
	assert_null(ram);
	assert_int_equal(shma_ram_destroy(&ram), 0); /* NULL: no-op */
}

static void test_alloc_aligned_and_limited(void **state)
{
	shma_ram *ram;
	struct shma_ram_stats st;
	uint64_t a, b, c, d;

	(void)state;
	assert_int_equal(shma_ram_new(16 * 4096, &ram), 0);
	assert_int_equal(ram_alloc(ram, 4096, &a), 0);
	assert_int_equal(ram_alloc(ram, 8 * 4096, &b), 0);
	assert_int_equal(b % (8 * 4096), 0);
	assert_int_equal(ram_alloc(ram, 4 * 4096, &c), 0);
	assert_int_equal(c % (4 * 4096), 0);
	/* 13 of 16 units used, the largest aligned free run is 2 units at most */
	assert_int_equal(ram_alloc(ram, 4 * 4096, &d), SHMA_ERAMLIMIT);
	assert_int_equal(ram_alloc(ram, 3 * 4096, &d), -EINVAL); /* not a power of two */
	assert_int_equal(ram_alloc(ram, 32 * 4096, &d), SHMA_ERAMLIMIT);
	shma_ram_stats(ram, &st);
	assert_int_equal(st.used, 13 * 4096);
	assert_int_equal(st.npages, 3);
	/* no two allocations overlap */
	assert_true(a + 4096 <= b || b + 8 * 4096 <= a);
	assert_true(c + 4 * 4096 <= b || b + 8 * 4096 <= c);
	assert_true(a + 4096 <= c || c + 4 * 4096 <= a);
	/* writable through the view */
	memset(ram_addr(ram, b), 0x5a, 8 * 4096);
	ram_free(ram, b, 8 * 4096);
	assert_int_equal(ram_alloc(ram, 8 * 4096, &d), 0);
	assert_int_equal(d, b); /* the only aligned 8-unit run left */
	ram_free(ram, a, 4096);
	ram_free(ram, c, 4 * 4096);
	ram_free(ram, d, 8 * 4096);
	shma_ram_stats(ram, &st);
	assert_int_equal(st.used, 0);
	assert_int_equal(st.npages, 0);
	assert_int_equal(shma_ram_destroy(&ram), 0);
}

static size_t memfd_bytes(const shma_ram *ram)
{
	struct stat sb;

	assert_int_equal(fstat(ram->fd, &sb), 0);
	return (size_t)sb.st_blocks * 512;
}

/* A freed page is kept for reuse within the cache bound, given back beyond
 * it, and shma_ram_trim gives the kept ones back. */
static void test_free_caches_then_trims(void **state)
{
	shma_ram *ram;
	struct shma_ram_stats st;
	uint64_t off, off2, big;

	(void)state;
	assert_int_equal(shma_ram_new(64 * 4096, &ram), 0); /* cache: 16 units */
	assert_int_equal(memfd_bytes(ram), 0);
	assert_int_equal(ram_alloc(ram, 16 * 4096, &off), 0);
	assert_int_equal(memfd_bytes(ram), 16 * 4096); /* populated at allocation */
	ram_free(ram, off, 16 * 4096);
	shma_ram_stats(ram, &st);
	assert_int_equal(st.used, 0);
	assert_int_equal(st.cached, 16 * 4096);
	assert_int_equal(memfd_bytes(ram), 16 * 4096);

	/* reused as is: same place, no new memory */
	assert_int_equal(ram_alloc(ram, 16 * 4096, &off2), 0);
	assert_int_equal(off2, off);
	shma_ram_stats(ram, &st);
	assert_int_equal(st.cached, 0);
	assert_int_equal(st.used, 16 * 4096);

	/* beyond the cache bound: given back at once */
	assert_int_equal(ram_alloc(ram, 32 * 4096, &big), 0);
	assert_int_equal(memfd_bytes(ram), 48 * 4096);
	ram_free(ram, big, 32 * 4096);
	assert_int_equal(memfd_bytes(ram), 16 * 4096);

	ram_free(ram, off2, 16 * 4096);
	assert_int_equal(shma_ram_trim(ram), 16 * 4096);
	assert_int_equal(memfd_bytes(ram), 0);
	shma_ram_stats(ram, &st);
	assert_int_equal(st.cached, 0);
	assert_int_equal(shma_ram_trim(ram), 0);
	assert_int_equal(shma_ram_destroy(&ram), 0);
}

/* Cached pages of one size give way when another size needs the room. */
static void test_cache_yields_to_other_sizes(void **state)
{
	shma_ram *ram;
	uint64_t a, b, c;

	(void)state;
	assert_int_equal(shma_ram_new(8 * 4096, &ram), 0); /* cache: 2 units */
	assert_int_equal(ram_alloc(ram, 4096, &a), 0);
	assert_int_equal(ram_alloc(ram, 4096, &b), 0);
	ram_free(ram, a, 4096);
	ram_free(ram, b, 4096);
	/* both cached, so no aligned 8-unit run is free until they go */
	assert_int_equal(ram_alloc(ram, 8 * 4096, &c), 0);
	assert_int_equal(c, 0);
	ram_free(ram, c, 8 * 4096);
	assert_int_equal(memfd_bytes(ram), 0);
	assert_int_equal(shma_ram_destroy(&ram), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_rejects_tiny_limit),
		cmocka_unit_test(test_alloc_aligned_and_limited),
		cmocka_unit_test(test_free_caches_then_trims),
		cmocka_unit_test(test_cache_yields_to_other_sizes),
	};

	return cmocka_run_group_tests_name("ram", tests, NULL, NULL);
}
