/* test_client_tx.c - arrays created, grown and appended to inside a
 * transaction: they commit and conflict like data (libshm, real broker). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "shma.h"

static struct harness h;

static int setup(void **state)
{
	(void)state;
	return harness_start(&h, NULL);
}

static int teardown(void **state)
{
	bool left = true;

	(void)state;
	assert_int_equal(harness_stop(&h, &left), 0);
	assert_false(left);
	return 0;
}

static shma_conn *conn(void)
{
	shma_conn *c = NULL;

	assert_int_equal(shma_connect(h.socket, NULL, &c), 0);
	return c;
}

/* Created in a transaction: invisible to others until commit, then there
 * with the data written before the commit, all at one revision. */
static void test_create_commits_with_data(void **state)
{
	const uint64_t shape[2] = { 100, 8 };
	shma_conn *a = conn(), *b = conn();
	shma_array *x, *y;
	struct shma_array_info info;
	uint64_t rev, rev_b;
	double *d;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	assert_int_equal(shma_create_tx(a, "tx/new", "<f8", 2, shape, 'C', 4096, &x), 0);
	d = shma_array_data(x);
	for (int i = 0; i < 800; i++)
		assert_true(d[i] == 0.0);
	d[0] = 1.5;
	d[799] = -2.5;
	/* nobody else sees it yet */
	assert_int_equal(shma_sync(b, &rev_b), 0);
	assert_int_equal(shma_open(b, "tx/new", &y), -ENOENT);
	assert_int_equal(shma_commit(a, &rev), 0);
	assert_true(rev > rev_b);
	shma_array_info(x, &info);
	assert_false(info.deleted);
	assert_int_equal(info.shape[0], 100);
	assert_true(d[0] == 1.5 && d[799] == -2.5);
	/* others see array and data together */
	assert_int_equal(shma_sync_to(b, rev), 0);
	assert_int_equal(shma_open(b, "tx/new", &y), 0);
	d = shma_array_data(y);
	assert_true(d[0] == 1.5 && d[799] == -2.5 && d[400] == 0.0);
	shma_close(&y);
	shma_close(&x);
	shma_disconnect(&a);
	shma_disconnect(&b);
}

/* Two transactions create the same name: the first committer wins. */
static void test_create_conflicts(void **state)
{
	const uint64_t shape[1] = { 10 };
	shma_conn *a = conn(), *b = conn();
	shma_array *x, *y;
	uint64_t rev;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	assert_int_equal(shma_create_tx(a, "tx/same", "<i8", 1, shape, 'C', 0, &x), 0);
	assert_int_equal(shma_create_tx(b, "tx/same", "<f4", 1, shape, 'C', 0, &y), 0);
	((int64_t *)shma_array_data(x))[3] = 33;
	((float *)shma_array_data(y))[3] = 4.5f;
	assert_int_equal(shma_commit(a, &rev), 0);
	assert_int_equal(shma_commit(b, NULL), SHMA_ECONFLICT);
	assert_non_null(strstr(shma_conn_error(b), "tx/same"));
	/* after abort the loser's handle reads as deleted; sync shows the winner */
	assert_int_equal(shma_abort(b), 0);
	{
		struct shma_array_info info;

		shma_array_info(y, &info);
		assert_true(info.deleted);
	}
	shma_close(&y);
	assert_int_equal(shma_sync_to(b, rev), 0);
	assert_int_equal(shma_open(b, "tx/same", &y), 0);
	assert_int_equal(((int64_t *)shma_array_data(y))[3], 33);
	/* a name that exists at the snapshot cannot be created */
	{
		shma_array *z;

		assert_int_equal(shma_create_tx(b, "tx/same", "<i8", 1, shape, 'C', 0, &z),
				 -EEXIST);
	}
	shma_close(&y);
	shma_close(&x);
	shma_disconnect(&a);
	shma_disconnect(&b);
}

/* Abort drops a created array: nothing reaches the broker. */
static void test_create_abort(void **state)
{
	const uint64_t shape[1] = { 1000 };
	shma_conn *a = conn(), *b = conn();
	shma_array *x, *y;
	uint64_t rev0, rev;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	rev0 = shma_revision(a);
	assert_int_equal(shma_create_tx(a, "tx/gone", "<u2", 1, shape, 'C', 0, &x), 0);
	((uint16_t *)shma_array_data(x))[5] = 5;
	assert_int_equal(shma_abort(a), 0);
	shma_close(&x);
	assert_int_equal(shma_commit(a, &rev), 0); /* nothing left to commit */
	assert_int_equal(rev, rev0);
	assert_int_equal(shma_sync(b, NULL), 0);
	assert_int_equal(shma_open(b, "tx/gone", &y), -ENOENT);
	shma_disconnect(&a);
	shma_disconnect(&b);
}

/* Appending rows: transactional, and it conflicts with data changed since. */
static void test_append(void **state)
{
	const uint64_t shape[2] = { 4, 512 }; /* rows of 4 KiB */
	shma_conn *a = conn(), *b = conn();
	shma_array *x, *y;
	struct shma_array_info info;
	uint64_t rev;
	double *row;

	(void)state;
	assert_int_equal(shma_vm_install_handler(), 0);
	assert_int_equal(shma_create(a, "tx/log", "<f8", 2, shape, 'C', 4096, &rev), 0);
	assert_int_equal(shma_sync_to(a, rev), 0);
	assert_int_equal(shma_sync_to(b, rev), 0);
	assert_int_equal(shma_open(a, "tx/log", &x), 0);
	assert_int_equal(shma_open(b, "tx/log", &y), 0);

	assert_int_equal(shma_append(x, 3, (void **)&row), 0);
	assert_ptr_equal(row, (char *)shma_array_data(x) + 4 * 4096);
	for (int i = 0; i < 3 * 512; i++)
		row[i] = i;
	shma_array_info(y, &info);
	assert_int_equal(info.shape[0], 4); /* not committed: b sees 4 rows */
	assert_int_equal(shma_commit(a, &rev), 0);
	assert_int_equal(shma_sync_to(b, rev), 0);
	shma_array_info(y, &info);
	assert_int_equal(info.shape[0], 7);
	row = (double *)((char *)shma_array_data(y) + 4 * 4096);
	assert_true(row[0] == 0.0 && row[3 * 512 - 1] == 3 * 512 - 1);

	/* b appends from a snapshot that a's later data commit overtakes */
	((double *)shma_array_data(x))[0] = 42.0;
	assert_int_equal(shma_commit(a, &rev), 0);
	assert_int_equal(shma_append(y, 1, NULL), 0);
	assert_int_equal(shma_commit(b, NULL), SHMA_ECONFLICT);
	assert_int_equal(shma_abort(b), 0);
	shma_array_info(y, &info);
	assert_int_equal(info.shape[0], 7);
	assert_int_equal(shma_sync_to(b, rev), 0);
	assert_int_equal(shma_append(y, 1, NULL), 0);
	assert_int_equal(shma_commit(b, &rev), 0);
	assert_int_equal(shma_sync_to(a, rev), 0);
	shma_array_info(x, &info);
	assert_int_equal(info.shape[0], 8);
	shma_close(&x);
	shma_close(&y);
	shma_disconnect(&a);
	shma_disconnect(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_commits_with_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append, setup, teardown),
	};

	return cmocka_run_group_tests_name("client_tx", tests, NULL, NULL);
}
