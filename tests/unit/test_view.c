/* test_view.c - views of array memory (libshm/view.c): slicing, indexing,
 * index expressions, transpose, reshape, astype and the queries, checked
 * against NumPy.
 *
 * The arrays are malloc'd "<i8" memory holding 0, 1, 2, ...: the value of an
 * element is its flat C-order index in the array, so any view can be checked
 * element by element.  The tables below were generated with NumPy 1.24 (see
 * the comment over each) and are plain data: the test needs no Python. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "shma.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- NumPy reference tables ------------------------------------------------- */

struct slice_case {
	uint64_t n;
	int64_t start, stop, step;
	const char *elems; /* the selected elements of np.arange(n) */
};

struct subscript_case {
	const char *expr;
	unsigned ndim;
	uint64_t shape[3];
	int64_t strides[3];
	int64_t offset; /* data - base, bytes */
};

struct reshape_case {
	const char *expr; /* the view reshaped: A[expr] */
	unsigned ndim;
	uint64_t shape[5];
	int err;
	unsigned out_ndim;
	uint64_t out_shape[5];
	int64_t out_strides[5];
};

struct astype_case {
	const char *expr;
	const char *dtype;
	int err;
	unsigned ndim;
	uint64_t shape[3];
	int64_t strides[3];
	int64_t offset;
};

struct extent_case {
	const char *expr;
	uint64_t lo, hi;
	bool contiguous;
};

/* generated with numpy 1.24.2: a = np.arange(n); a[start:stop:step] */
static const struct slice_case slice_cases[] = {
	{ 7, SHMA_END, SHMA_END, 1, "0 1 2 3 4 5 6" },
	{ 7, SHMA_END, -100, 1, "" },
	{ 7, SHMA_END, -7, 1, "" },
	{ 7, SHMA_END, -3, 1, "0 1 2 3" },
	{ 7, SHMA_END, -1, 1, "0 1 2 3 4 5" },
	{ 7, SHMA_END, 0, 1, "" },
	{ 7, SHMA_END, 3, 1, "0 1 2" },
	{ 7, SHMA_END, 6, 1, "0 1 2 3 4 5" },
	{ 7, SHMA_END, 7, 1, "0 1 2 3 4 5 6" },
	{ 7, SHMA_END, 100, 1, "0 1 2 3 4 5 6" },
	{ 7, -100, SHMA_END, 1, "0 1 2 3 4 5 6" },
	{ 7, -100, -100, 1, "" },
	{ 7, -100, -7, 1, "" },
	{ 7, -100, -3, 1, "0 1 2 3" },
	{ 7, -100, -1, 1, "0 1 2 3 4 5" },
	{ 7, -100, 0, 1, "" },
	{ 7, -100, 3, 1, "0 1 2" },
	{ 7, -100, 6, 1, "0 1 2 3 4 5" },
	{ 7, -100, 7, 1, "0 1 2 3 4 5 6" },
	{ 7, -100, 100, 1, "0 1 2 3 4 5 6" },
	{ 7, -7, SHMA_END, 1, "0 1 2 3 4 5 6" },
	{ 7, -7, -100, 1, "" },
	{ 7, -7, -7, 1, "" },
	{ 7, -7, -3, 1, "0 1 2 3" },
	{ 7, -7, -1, 1, "0 1 2 3 4 5" },
	{ 7, -7, 0, 1, "" },
	{ 7, -7, 3, 1, "0 1 2" },
	{ 7, -7, 6, 1, "0 1 2 3 4 5" },
	{ 7, -7, 7, 1, "0 1 2 3 4 5 6" },
	{ 7, -7, 100, 1, "0 1 2 3 4 5 6" },
	{ 7, -3, SHMA_END, 1, "4 5 6" },
	{ 7, -3, -100, 1, "" },
	{ 7, -3, -7, 1, "" },
	{ 7, -3, -3, 1, "" },
	{ 7, -3, -1, 1, "4 5" },
	{ 7, -3, 0, 1, "" },
	{ 7, -3, 3, 1, "" },
	{ 7, -3, 6, 1, "4 5" },
	{ 7, -3, 7, 1, "4 5 6" },
	{ 7, -3, 100, 1, "4 5 6" },
	{ 7, -1, SHMA_END, 1, "6" },
	{ 7, -1, -100, 1, "" },
	{ 7, -1, -7, 1, "" },
	{ 7, -1, -3, 1, "" },
	{ 7, -1, -1, 1, "" },
	{ 7, -1, 0, 1, "" },
	{ 7, -1, 3, 1, "" },
	{ 7, -1, 6, 1, "" },
	{ 7, -1, 7, 1, "6" },
	{ 7, -1, 100, 1, "6" },
	{ 7, 0, SHMA_END, 1, "0 1 2 3 4 5 6" },
	{ 7, 0, -100, 1, "" },
	{ 7, 0, -7, 1, "" },
	{ 7, 0, -3, 1, "0 1 2 3" },
	{ 7, 0, -1, 1, "0 1 2 3 4 5" },
	{ 7, 0, 0, 1, "" },
	{ 7, 0, 3, 1, "0 1 2" },
	{ 7, 0, 6, 1, "0 1 2 3 4 5" },
	{ 7, 0, 7, 1, "0 1 2 3 4 5 6" },
	{ 7, 0, 100, 1, "0 1 2 3 4 5 6" },
	{ 7, 3, SHMA_END, 1, "3 4 5 6" },
	{ 7, 3, -100, 1, "" },
	{ 7, 3, -7, 1, "" },
	{ 7, 3, -3, 1, "3" },
	{ 7, 3, -1, 1, "3 4 5" },
	{ 7, 3, 0, 1, "" },
	{ 7, 3, 3, 1, "" },
	{ 7, 3, 6, 1, "3 4 5" },
	{ 7, 3, 7, 1, "3 4 5 6" },
	{ 7, 3, 100, 1, "3 4 5 6" },
	{ 7, 6, SHMA_END, 1, "6" },
	{ 7, 6, -100, 1, "" },
	{ 7, 6, -7, 1, "" },
	{ 7, 6, -3, 1, "" },
	{ 7, 6, -1, 1, "" },
	{ 7, 6, 0, 1, "" },
	{ 7, 6, 3, 1, "" },
	{ 7, 6, 6, 1, "" },
	{ 7, 6, 7, 1, "6" },
	{ 7, 6, 100, 1, "6" },
	{ 7, 7, SHMA_END, 1, "" },
	{ 7, 7, -100, 1, "" },
	{ 7, 7, -7, 1, "" },
	{ 7, 7, -3, 1, "" },
	{ 7, 7, -1, 1, "" },
	{ 7, 7, 0, 1, "" },
	{ 7, 7, 3, 1, "" },
	{ 7, 7, 6, 1, "" },
	{ 7, 7, 7, 1, "" },
	{ 7, 7, 100, 1, "" },
	{ 7, 100, SHMA_END, 1, "" },
	{ 7, 100, -100, 1, "" },
	{ 7, 100, -7, 1, "" },
	{ 7, 100, -3, 1, "" },
	{ 7, 100, -1, 1, "" },
	{ 7, 100, 0, 1, "" },
	{ 7, 100, 3, 1, "" },
	{ 7, 100, 6, 1, "" },
	{ 7, 100, 7, 1, "" },
	{ 7, 100, 100, 1, "" },
	{ 7, SHMA_END, 100, 2, "0 2 4 6" },
	{ 7, -100, -3, 2, "0 2" },
	{ 7, -100, 100, 2, "0 2 4 6" },
	{ 7, -7, SHMA_END, 2, "0 2 4 6" },
	{ 7, -7, 3, 2, "0 2" },
	{ 7, -3, 0, 2, "" },
	{ 7, 0, 3, 2, "0 2" },
	{ 7, 6, -100, 2, "" },
	{ 7, 6, -7, 2, "" },
	{ 7, 100, -100, 2, "" },
	{ 7, SHMA_END, SHMA_END, 3, "0 3 6" },
	{ 7, -100, -7, 3, "" },
	{ 7, -7, -1, 3, "0 3" },
	{ 7, -7, 0, 3, "" },
	{ 7, -3, -100, 3, "" },
	{ 7, -1, SHMA_END, 3, "6" },
	{ 7, 0, SHMA_END, 3, "0 3 6" },
	{ 7, 0, -100, 3, "" },
	{ 7, 3, 7, 3, "3 6" },
	{ 7, 6, 100, 3, "6" },
	{ 7, 7, -100, 3, "" },
	{ 7, SHMA_END, SHMA_END, -1, "6 5 4 3 2 1 0" },
	{ 7, SHMA_END, -100, -1, "6 5 4 3 2 1 0" },
	{ 7, SHMA_END, -7, -1, "6 5 4 3 2 1" },
	{ 7, SHMA_END, -3, -1, "6 5" },
	{ 7, SHMA_END, -1, -1, "" },
	{ 7, SHMA_END, 0, -1, "6 5 4 3 2 1" },
	{ 7, SHMA_END, 3, -1, "6 5 4" },
	{ 7, SHMA_END, 6, -1, "" },
	{ 7, SHMA_END, 7, -1, "" },
	{ 7, SHMA_END, 100, -1, "" },
	{ 7, -100, SHMA_END, -1, "" },
	{ 7, -100, -100, -1, "" },
	{ 7, -100, -7, -1, "" },
	{ 7, -100, -3, -1, "" },
	{ 7, -100, -1, -1, "" },
	{ 7, -100, 0, -1, "" },
	{ 7, -100, 3, -1, "" },
	{ 7, -100, 6, -1, "" },
	{ 7, -100, 7, -1, "" },
	{ 7, -100, 100, -1, "" },
	{ 7, -7, SHMA_END, -1, "0" },
	{ 7, -7, -100, -1, "0" },
	{ 7, -7, -7, -1, "" },
	{ 7, -7, -3, -1, "" },
	{ 7, -7, -1, -1, "" },
	{ 7, -7, 0, -1, "" },
	{ 7, -7, 3, -1, "" },
	{ 7, -7, 6, -1, "" },
	{ 7, -7, 7, -1, "" },
	{ 7, -7, 100, -1, "" },
	{ 7, -3, SHMA_END, -1, "4 3 2 1 0" },
	{ 7, -3, -100, -1, "4 3 2 1 0" },
	{ 7, -3, -7, -1, "4 3 2 1" },
	{ 7, -3, -3, -1, "" },
	{ 7, -3, -1, -1, "" },
	{ 7, -3, 0, -1, "4 3 2 1" },
	{ 7, -3, 3, -1, "4" },
	{ 7, -3, 6, -1, "" },
	{ 7, -3, 7, -1, "" },
	{ 7, -3, 100, -1, "" },
	{ 7, -1, SHMA_END, -1, "6 5 4 3 2 1 0" },
	{ 7, -1, -100, -1, "6 5 4 3 2 1 0" },
	{ 7, -1, -7, -1, "6 5 4 3 2 1" },
	{ 7, -1, -3, -1, "6 5" },
	{ 7, -1, -1, -1, "" },
	{ 7, -1, 0, -1, "6 5 4 3 2 1" },
	{ 7, -1, 3, -1, "6 5 4" },
	{ 7, -1, 6, -1, "" },
	{ 7, -1, 7, -1, "" },
	{ 7, -1, 100, -1, "" },
	{ 7, 0, SHMA_END, -1, "0" },
	{ 7, 0, -100, -1, "0" },
	{ 7, 0, -7, -1, "" },
	{ 7, 0, -3, -1, "" },
	{ 7, 0, -1, -1, "" },
	{ 7, 0, 0, -1, "" },
	{ 7, 0, 3, -1, "" },
	{ 7, 0, 6, -1, "" },
	{ 7, 0, 7, -1, "" },
	{ 7, 0, 100, -1, "" },
	{ 7, 3, SHMA_END, -1, "3 2 1 0" },
	{ 7, 3, -100, -1, "3 2 1 0" },
	{ 7, 3, -7, -1, "3 2 1" },
	{ 7, 3, -3, -1, "" },
	{ 7, 3, -1, -1, "" },
	{ 7, 3, 0, -1, "3 2 1" },
	{ 7, 3, 3, -1, "" },
	{ 7, 3, 6, -1, "" },
	{ 7, 3, 7, -1, "" },
	{ 7, 3, 100, -1, "" },
	{ 7, 6, SHMA_END, -1, "6 5 4 3 2 1 0" },
	{ 7, 6, -100, -1, "6 5 4 3 2 1 0" },
	{ 7, 6, -7, -1, "6 5 4 3 2 1" },
	{ 7, 6, -3, -1, "6 5" },
	{ 7, 6, -1, -1, "" },
	{ 7, 6, 0, -1, "6 5 4 3 2 1" },
	{ 7, 6, 3, -1, "6 5 4" },
	{ 7, 6, 6, -1, "" },
	{ 7, 6, 7, -1, "" },
	{ 7, 6, 100, -1, "" },
	{ 7, 7, SHMA_END, -1, "6 5 4 3 2 1 0" },
	{ 7, 7, -100, -1, "6 5 4 3 2 1 0" },
	{ 7, 7, -7, -1, "6 5 4 3 2 1" },
	{ 7, 7, -3, -1, "6 5" },
	{ 7, 7, -1, -1, "" },
	{ 7, 7, 0, -1, "6 5 4 3 2 1" },
	{ 7, 7, 3, -1, "6 5 4" },
	{ 7, 7, 6, -1, "" },
	{ 7, 7, 7, -1, "" },
	{ 7, 7, 100, -1, "" },
	{ 7, 100, SHMA_END, -1, "6 5 4 3 2 1 0" },
	{ 7, 100, -100, -1, "6 5 4 3 2 1 0" },
	{ 7, 100, -7, -1, "6 5 4 3 2 1" },
	{ 7, 100, -3, -1, "6 5" },
	{ 7, 100, -1, -1, "" },
	{ 7, 100, 0, -1, "6 5 4 3 2 1" },
	{ 7, 100, 3, -1, "6 5 4" },
	{ 7, 100, 6, -1, "" },
	{ 7, 100, 7, -1, "" },
	{ 7, 100, 100, -1, "" },
	{ 7, SHMA_END, -3, -2, "6" },
	{ 7, -3, 6, -2, "" },
	{ 7, 0, 6, -2, "" },
	{ 7, 3, -7, -2, "3 1" },
	{ 7, 7, SHMA_END, -2, "6 4 2 0" },
	{ 7, 7, -100, -2, "6 4 2 0" },
	{ 7, 7, 6, -2, "" },
	{ 7, -7, -100, -3, "0" },
	{ 7, -1, 100, -3, "" },
	{ 7, 3, -3, -3, "" },
	{ 7, 6, -3, -3, "6" },
	{ 7, 6, 6, -3, "" },
	{ 7, 7, 6, -3, "" },
	{ 7, SHMA_END, -1, 6, "0" },
	{ 7, -7, 6, 6, "0" },
	{ 7, -3, -1, 6, "4" },
	{ 7, 3, -1, 6, "3" },
	{ 7, 3, 6, 6, "3" },
	{ 7, SHMA_END, -3, -6, "6" },
	{ 7, -100, -1, -6, "" },
	{ 7, -3, -100, -6, "4" },
	{ 7, 3, -3, -6, "" },
	{ 7, 3, 100, -6, "" },
	{ 7, SHMA_END, -7, 7, "" },
	{ 7, -3, -3, 7, "" },
	{ 7, -3, 6, 7, "4" },
	{ 7, 3, -100, 7, "" },
	{ 7, 6, -3, 7, "" },
	{ 7, 6, 3, 7, "" },
	{ 7, 7, -7, 7, "" },
	{ 7, 7, -3, 7, "" },
	{ 7, 7, 0, 7, "" },
	{ 7, 7, 100, 7, "" },
	{ 7, SHMA_END, SHMA_END, -7, "6" },
	{ 7, SHMA_END, 6, -7, "" },
	{ 7, -7, -1, -7, "" },
	{ 7, -3, SHMA_END, -7, "4" },
	{ 7, -3, 6, -7, "" },
	{ 7, -1, -7, -7, "6" },
	{ 7, 6, 3, -7, "6" },
	{ 7, 100, SHMA_END, -7, "6" },
	{ 0, -7, -7, 1, "" },
	{ 0, -3, 3, 1, "" },
	{ 0, 3, -3, 1, "" },
	{ 0, 3, 100, 1, "" },
	{ 0, -100, -1, 2, "" },
	{ 0, -3, 3, 2, "" },
	{ 0, 7, 6, 2, "" },
	{ 0, -7, -7, -1, "" },
	{ 0, -1, -1, -1, "" },
	{ 0, -1, 0, -1, "" },
	{ 0, 0, 0, -1, "" },
	{ 0, 3, -100, -1, "" },
	{ 0, 3, 6, -1, "" },
	{ 0, 3, 7, -1, "" },
	{ 0, 100, 0, -1, "" },
	{ 0, -100, -1, -2, "" },
	{ 0, -3, 3, -2, "" },
	{ 0, 0, SHMA_END, -2, "" },
	{ 0, 0, -7, -2, "" },
	{ 0, 0, -1, -2, "" },
	{ 0, 0, 0, -2, "" },
	{ 0, 7, SHMA_END, -2, "" },
	{ 0, 7, 100, -2, "" },
	{ 0, 100, 7, -2, "" },
	{ 1, -7, -3, 1, "" },
	{ 1, -3, -1, 1, "" },
	{ 1, -1, -100, 1, "" },
	{ 1, 6, -7, 1, "" },
	{ 1, -100, 100, 2, "0" },
	{ 1, -1, 7, 2, "0" },
	{ 1, 3, 100, 2, "" },
	{ 1, 100, -100, 2, "" },
	{ 1, 100, 100, 2, "" },
	{ 1, -100, -7, -1, "" },
	{ 1, -7, SHMA_END, -1, "" },
	{ 1, 0, -7, -1, "0" },
	{ 1, 3, 0, -1, "" },
	{ 1, 6, 7, -1, "" },
	{ 1, 6, 100, -1, "" },
	{ 1, -100, -100, -2, "" },
	{ 1, -100, 0, -2, "" },
	{ 1, -7, 7, -2, "" },
	{ 1, -3, 0, -2, "" },
	{ 1, -3, 6, -2, "" },
	{ 1, -1, SHMA_END, -2, "0" },
	{ 1, -1, -1, -2, "" },
	{ 1, 0, 100, -2, "" },
	{ 1, 3, SHMA_END, -2, "0" },
	{ 1, 100, -7, -2, "0" },
};
/* generated with numpy: A = np.arange(120, dtype="<i8").reshape(4, 5, 6); A[expr] */
static const struct subscript_case subscript_cases[] = {
	{ "", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "()", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "...", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "1", 2, { 5, 6 }, { 48, 8 }, 240 },
	{ "-1", 2, { 5, 6 }, { 48, 8 }, 720 },
	{ "3", 2, { 5, 6 }, { 48, 8 }, 720 },
	{ "-4", 2, { 5, 6 }, { 48, 8 }, 0 },
	{ "1, 2", 1, { 6 }, { 8 }, 336 },
	{ "1,2,3", 0, { 0 }, { 0 }, 360 },
	{ "-1,-1,-1", 0, { 0 }, { 0 }, 952 },
	{ ":", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "::", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "::", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "::-1", 3, { 4, 5, 6 }, { -240, 48, 8 }, 720 },
	{ "1:3", 3, { 2, 5, 6 }, { 240, 48, 8 }, 240 },
	{ "1:", 3, { 3, 5, 6 }, { 240, 48, 8 }, 240 },
	{ ":2", 3, { 2, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "-2:", 3, { 2, 5, 6 }, { 240, 48, 8 }, 480 },
	{ ":-2", 3, { 2, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "::2", 3, { 2, 5, 6 }, { 480, 48, 8 }, 0 },
	{ "1::2", 3, { 2, 5, 6 }, { 480, 48, 8 }, 240 },
	{ "::-2", 3, { 2, 5, 6 }, { -480, 48, 8 }, 720 },
	{ "3:0:-1", 3, { 3, 5, 6 }, { -240, 48, 8 }, 720 },
	{ "3:0:-2", 3, { 2, 5, 6 }, { -480, 48, 8 }, 720 },
	{ "-1::-1", 3, { 4, 5, 6 }, { -240, 48, 8 }, 720 },
	{ "1:10:2, ::-1, 5", 2, { 2, 5 }, { 480, -48 }, 472 },
	{ "..., 0", 2, { 4, 5 }, { 240, 48 }, 0 },
	{ "0, ...", 2, { 5, 6 }, { 48, 8 }, 0 },
	{ "..., 1:3", 3, { 4, 5, 2 }, { 240, 48, 8 }, 8 },
	{ "1, ..., 2", 1, { 5 }, { 48 }, 256 },
	{ "1, 2, 3, ...", 0, { 0 }, { 0 }, 360 },
	{ "..., 1, 2, 3", 0, { 0 }, { 0 }, 360 },
	{ ":, :, ::-1", 3, { 4, 5, 6 }, { 240, 48, -8 }, 40 },
	{ "::-1, ::-1, ::-1", 3, { 4, 5, 6 }, { -240, -48, -8 }, 952 },
	{ " 1 : 3 , - 1 ", 2, { 2, 6 }, { 240, 8 }, 432 },
	{ "\t2,\n:", 2, { 5, 6 }, { 48, 8 }, 480 },
	{ "1,", 2, { 5, 6 }, { 48, 8 }, 240 },
	{ "1, 2,", 1, { 6 }, { 8 }, 336 },
	{ "::3, 1", 2, { 2, 6 }, { 720, 8 }, 48 },
	{ "2:2", 3, { 0, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "3:1", 3, { 0, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "5:", 3, { 0, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "-100:100", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "100:-100:-1", 3, { 4, 5, 6 }, { -240, 48, 8 }, 720 },
	{ "0:0, ::-1", 3, { 0, 5, 6 }, { 240, -48, 8 }, 192 },
	{ ":, 4", 2, { 4, 6 }, { 240, 8 }, 192 },
	{ ":, -5", 2, { 4, 6 }, { 240, 8 }, 0 },
	{ "..., -6", 2, { 4, 5 }, { 240, 48 }, 0 },
	{ "+1", 2, { 5, 6 }, { 48, 8 }, 240 },
	{ "1:+3:+1", 3, { 2, 5, 6 }, { 240, 48, 8 }, 240 },
	{ "::-3, 1::2, ::4", 3, { 2, 2, 2 }, { -720, 96, 32 }, 768 },
	{ "(  )", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "..., ::-1", 3, { 4, 5, 6 }, { 240, 48, -8 }, 40 },
	{ ":, ..., ::2", 3, { 4, 5, 3 }, { 240, 48, 16 }, 0 },
	{ "-9223372036854775807:9223372036854775807", 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ "::9223372036854775807", 3, { 1, 5, 6 }, { -240, 48, 8 }, 0 },
	{ "::-9223372036854775807", 3, { 1, 5, 6 }, { 240, 48, 8 }, 720 },
	{ "9223372036854775807::-1", 3, { 4, 5, 6 }, { -240, 48, 8 }, 720 },
};
/* generated with numpy: v = A[expr].view(); v.shape = shape (-1: SHMA_INFER);
 * -ENOTSUP: numpy needs a copy */
static const struct reshape_case reshape_cases[] = {
	{ "", 1, { 120 }, 0, 1, { 120 }, { 8 } },
	{ "", 1, { SHMA_INFER }, 0, 1, { 120 }, { 8 } },
	{ "", 3, { 2, SHMA_INFER, 3 }, 0, 3, { 2, 20, 3 }, { 480, 24, 8 } },
	{ "", 3, { 6, 5, 4 }, 0, 3, { 6, 5, 4 }, { 160, 32, 8 } },
	{ "", 3, { 4, 5, 6 }, 0, 3, { 4, 5, 6 }, { 240, 48, 8 } },
	{ "", 3, { 1, 120, 1 }, 0, 3, { 1, 120, 1 }, { 960, 8, 8 } },
	{ "::2", 1, { 60 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ "::2", 3, { 2, 5, 6 }, 0, 3, { 2, 5, 6 }, { 480, 48, 8 } },
	{ "::2", 2, { 2, 30 }, 0, 2, { 2, 30 }, { 480, 8 } },
	{ "::2", 2, { 10, 6 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ "::2", 4, { 2, 5, 3, 2 }, 0, 4, { 2, 5, 3, 2 }, { 480, 48, 16, 8 } },
	{ ":, ::2", 2, { 4, 18 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ ":, ::2", 2, { 12, 6 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ ":, ::2", 3, { 4, 3, 6 }, 0, 3, { 4, 3, 6 }, { 240, 96, 8 } },
	{ ":, ::2", 2, { 24, 3 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ ":, :, ::2", 2, { 4, 15 }, 0, 2, { 4, 15 }, { 240, 16 } },
	{ ":, :, ::2", 1, { 60 }, 0, 1, { 60 }, { 16 } },
	{ ":, :, ::2", 2, { 20, 3 }, 0, 2, { 20, 3 }, { 48, 16 } },
	{ ":, :, ::2", 4, { 4, 5, 3, 1 }, 0, 4, { 4, 5, 3, 1 }, { 240, 48, 16, 16 } },
	{ "::-1", 1, { 120 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ "::-1", 2, { 4, 30 }, 0, 2, { 4, 30 }, { -240, 8 } },
	{ "::-1", 3, { 2, 2, 30 }, 0, 3, { 2, 2, 30 }, { -480, -240, 8 } },
	{ "::-1, ::-1", 2, { 20, 6 }, 0, 2, { 20, 6 }, { -48, 8 } },
	{ "::-1, ::-1", 2, { 4, 30 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ "1:3, 1:4, 2:5", 2, { 2, 9 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ "1:3, 1:4, 2:5", 2, { 6, 3 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ "1:3, 1:4, 2:5", 3, { 2, 3, 3 }, 0, 3, { 2, 3, 3 }, { 240, 48, 8 } },
	{ "1:3, 1:4, 2:5", 1, { 18 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ ":, 0", 1, { 24 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ ":, 0", 2, { 2, 12 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ ":, 0", 3, { 2, 2, 6 }, 0, 3, { 2, 2, 6 }, { 480, 240, 8 } },
	{ ":, 0", 2, { 8, 3 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ "..., 0", 1, { 20 }, 0, 1, { 20 }, { 48 } },
	{ "..., 0", 2, { 2, 10 }, 0, 2, { 2, 10 }, { 480, 48 } },
	{ "..., 0", 3, { 4, 5, 1 }, 0, 3, { 4, 5, 1 }, { 240, 48, 48 } },
	{ "..., 0", 5, { 1, 4, 1, 5, 1 }, 0, 5, { 1, 4, 1, 5, 1 }, { 960, 240, 240, 48, 48 } },
	{ "1:2", 2, { 5, 6 }, 0, 2, { 5, 6 }, { 48, 8 } },
	{ "1:2, ::-1", 2, { 5, 6 }, 0, 2, { 5, 6 }, { -48, 8 } },
	{ "1:2, ::-1", 1, { 30 }, -ENOTSUP, 0, { 0 }, { 0 } },
	{ "1:2, :, 3:4", 1, { 5 }, 0, 1, { 5 }, { 48 } },
	{ "1:2, :, 3:4", 2, { 1, 5 }, 0, 2, { 1, 5 }, { 240, 48 } },
	{ "0:1, 0:1, 0:1", 0, { 0 }, 0, 0, { 0 }, { 0 } },
	{ "0:1, 0:1, ::2", 1, { 3 }, 0, 1, { 3 }, { 16 } },
	{ "0:1, 0:1, ::2", 2, { 3, 1 }, 0, 2, { 3, 1 }, { 16, 16 } },
	{ "0:1, 0:1, ::2", 4, { 1, 3, 1, 1 }, 0, 4, { 1, 3, 1, 1 }, { 48, 16, 16, 16 } },
};
/* generated with numpy: A[expr].view(dtype); err: numpy raised ValueError */
static const struct astype_case astype_cases[] = {
	{ "", "|u1", 0, 3, { 4, 5, 48 }, { 240, 48, 1 }, 0 },
	{ "", "<i4", 0, 3, { 4, 5, 12 }, { 240, 48, 4 }, 0 },
	{ "", "<c16", 0, 3, { 4, 5, 3 }, { 240, 48, 16 }, 0 },
	{ "", "<f8", 0, 3, { 4, 5, 6 }, { 240, 48, 8 }, 0 },
	{ ":, :, 1:5", "<c16", 0, 3, { 4, 5, 2 }, { 240, 48, 16 }, 8 },
	{ ":, :, 1:4", "<c16", -EINVAL, 0, { 0 }, { 0 }, 0 },
	{ ":, :, ::2", "<i4", -ENOTSUP, 0, { 0 }, { 0 }, 0 },
	{ ":, :, ::2", "<i8", 0, 3, { 4, 5, 3 }, { 240, 48, 16 }, 0 },
	{ ":, :, 0:1", "|u1", 0, 3, { 4, 5, 8 }, { 240, 48, 1 }, 0 },
	{ "..., 2:3", "<i2", 0, 3, { 4, 5, 4 }, { 240, 48, 2 }, 16 },
	{ ":, 0", "<i4", 0, 2, { 4, 12 }, { 240, 4 }, 0 },
	{ "::-1", "<i4", 0, 3, { 4, 5, 12 }, { -240, 48, 4 }, 720 },
	{ ":, :, ::-1", "<i4", -ENOTSUP, 0, { 0 }, { 0 }, 0 },
	{ "1, 2, 3", "<i4", -EINVAL, 0, { 0 }, { 0 }, 0 },
	{ "1, 2, 3", "<f8", 0, 0, { 0 }, { 0 }, 360 },
	{ "2:2", "<i4", 0, 3, { 0, 5, 12 }, { 240, 48, 4 }, 0 },
	{ "..., 0:0", "<c16", 0, 3, { 4, 5, 0 }, { 240, 48, 16 }, 0 },
	{ ":, :, 0:3", "<c16", -EINVAL, 0, { 0 }, { 0 }, 0 },
	{ "..., 1:4", "|u1", 0, 3, { 4, 5, 24 }, { 240, 48, 1 }, 8 },
};
/* generated with numpy: np.byte_bounds(A[expr]) - A address; flags.c_contiguous */
static const struct extent_case extent_cases[] = {
	{ "", 0, 960, true },
	{ "1", 240, 480, true },
	{ "::-1", 0, 960, false },
	{ ":, ::-1", 0, 960, false },
	{ "::-1, ::-2, ::-3", 16, 960, false },
	{ "1:3, 1:4, 2:5", 304, 664, false },
	{ "3:0:-1, ::2, 4", 272, 952, false },
	{ "..., 5", 40, 960, false },
	{ "-1, -1, -1", 952, 960, true },
	{ "2:3, 4:5, 1:2", 680, 688, true },
	{ ":, 0", 0, 768, false },
	{ "0, 0", 0, 48, true },
	{ ":, :, 0:1", 0, 920, false },
	{ "0:1", 0, 240, true },
	{ "2:3", 480, 720, true },
};

/* ---- helpers ---------------------------------------------------------------- */

/* n int64s holding 0, 1, ..., n - 1 (at least one, so never NULL). */
static int64_t *arange(size_t n)
{
	int64_t *a = malloc((n ? n : 1) * sizeof(*a));
	size_t i;

	assert_non_null(a);
	for (i = 0; i < n; i++)
		a[i] = (int64_t)i;
	return a;
}

/* A = np.arange(120, dtype="<i8").reshape(4, 5, 6) over mem */
static void view_A(int64_t *mem, struct shma_view *v)
{
	static const uint64_t shape[] = { 4, 5, 6 };

	assert_int_equal(shma_view_init(v, mem, "<i8", 3, shape), 0);
}

static void subscript_ok(const struct shma_view *in, const char *expr, struct shma_view *out)
{
	char why[200];
	int err;

	err = shma_view_subscript(in, expr, out, why, sizeof(why));
	if (err)
		fail_msg("\"%s\": %d (%s)", expr, err, why);
}

static int64_t offset_of(const struct shma_view *v)
{
	return (int64_t)(v->data - v->base);
}

static void assert_layout(const struct shma_view *v, unsigned ndim, const uint64_t *shape,
			  const int64_t *strides)
{
	unsigned i;

	assert_int_equal(v->ndim, ndim);
	for (i = 0; i < ndim; i++) {
		assert_int_equal(v->shape[i], shape[i]);
		assert_int_equal(v->strides[i], strides[i]);
	}
}

static void assert_view_equal(const struct shma_view *a, const struct shma_view *b)
{
	assert_ptr_equal(a->data, b->data);
	assert_string_equal(a->dtype, b->dtype);
	assert_int_equal(a->itemsize, b->itemsize);
	assert_layout(a, b->ndim, b->shape, b->strides);
	assert_ptr_equal(a->base, b->base);
	assert_ptr_equal(a->array, b->array);
}

/* Step idx through every index of shape in C order; false after the last. */
static bool next_index(unsigned ndim, const uint64_t *shape, uint64_t *idx)
{
	unsigned i;

	for (i = ndim; i-- > 0;) {
		if (++idx[i] < shape[i])
			return true;
		idx[i] = 0;
	}
	return false;
}

/* The expected value of the element at idx of a view. */
typedef int64_t expect_fn(const uint64_t *idx);

/* Every element of v (an "<i8" view) is expect(idx), lies inside the
 * extent, and one past the end of each axis has no address. */
static void check_elements(const struct shma_view *v, expect_fn *expect)
{
	uint64_t idx[SHMA_MAXDIM] = { 0 }, lo, hi, n = 0;
	const char *p;
	unsigned i;

	shma_view_extent(v, &lo, &hi);
	if (shma_view_size(v) == 0)
		return;
	do {
		p = shma_view_ptr(v, idx);
		assert_non_null(p);
		assert_true(p >= v->base + lo && p + v->itemsize <= v->base + hi);
		assert_int_equal(*(const int64_t *)p, expect(idx));
		n++;
	} while (next_index(v->ndim, v->shape, idx));
	assert_int_equal(n, shma_view_size(v));
	for (i = 0; i < v->ndim; i++) {
		memset(idx, 0, sizeof(idx));
		idx[i] = v->shape[i];
		assert_null(shma_view_ptr(v, idx));
	}
}

/* The elements of a, in C order, are those of b in C order ("<i8" views). */
static void assert_same_elements(const struct shma_view *a, const struct shma_view *b)
{
	uint64_t ia[SHMA_MAXDIM] = { 0 }, ib[SHMA_MAXDIM] = { 0 };
	bool more;

	assert_int_equal(shma_view_size(a), shma_view_size(b));
	if (shma_view_size(a) == 0)
		return;
	do {
		assert_int_equal(*(int64_t *)shma_view_ptr(a, ia), *(int64_t *)shma_view_ptr(b, ib));
		more = next_index(a->ndim, a->shape, ia);
		assert_int_equal(more, next_index(b->ndim, b->shape, ib));
	} while (more);
}

/* The elements of a 1-D "<i8" view, as "0 1 2". */
static void format_elements(const struct shma_view *v, char *buf, size_t len)
{
	uint64_t i;
	size_t n = 0;

	buf[0] = '\0';
	for (i = 0; i < v->shape[0]; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%" PRId64, i ? " " : "",
				      *(int64_t *)shma_view_ptr(v, &i));
	assert_true(n < len);
}

/* An output that must stay untouched by a failing call. */
static void poison(struct shma_view *v, struct shma_view *copy)
{
	memset(v, 0xab, sizeof(*v));
	*copy = *v;
}

static void assert_untouched(const struct shma_view *v, const struct shma_view *copy)
{
	assert_memory_equal(v, copy, sizeof(*v));
}

/* ---- construction ----------------------------------------------------------- */

static void test_init(void **state)
{
	static const uint64_t s3[] = { 2, 3, 4 }, s30[] = { 3, 0 }, s03[] = { 0, 3 };
	static const uint64_t huge[] = { 0, 1ull << 62, 4 }, big[SHMA_MAXDIM + 1] = { 0 };
	static const int64_t st3[] = { 48, 16, 4 }, st30[] = { 8, 8 }, st03[] = { 24, 8 };
	struct shma_view v, keep;
	char mem[96];

	(void)state;
	assert_int_equal(shma_view_init(&v, mem, "=i4", 3, s3), 0);
	assert_string_equal(v.dtype, __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? ">i4" : "<i4");
	assert_int_equal(v.itemsize, 4);
	assert_ptr_equal(v.data, mem);
	assert_ptr_equal(v.base, mem);
	assert_null(v.array);
	assert_layout(&v, 3, s3, st3);
	assert_true(shma_view_is_contiguous(&v));
	assert_int_equal(shma_view_size(&v), 24);

	/* 1-byte types normalise to '|' */
	assert_int_equal(shma_view_init(&v, mem, "<u1", 0, NULL), 0);
	assert_string_equal(v.dtype, "|u1");
	assert_int_equal(v.ndim, 0);
	assert_int_equal(shma_view_size(&v), 1);
	assert_ptr_equal(shma_view_ptr(&v, NULL), mem);

	/* zero dimensions count as 1 for the strides (np.ndarray(buffer=)) */
	assert_int_equal(shma_view_init(&v, mem, "<i8", 2, s30), 0);
	assert_layout(&v, 2, s30, st30);
	assert_int_equal(shma_view_size(&v), 0);
	assert_int_equal(shma_view_init(&v, mem, "<i8", 2, s03), 0);
	assert_layout(&v, 2, s03, st03);

	poison(&v, &keep);
	assert_int_equal(shma_view_init(&v, mem, "<f3", 1, s3), -EINVAL);
	assert_int_equal(shma_view_init(&v, mem, "f8", 1, s3), -EINVAL);
	assert_int_equal(shma_view_init(&v, mem, NULL, 1, s3), -EINVAL);
	assert_int_equal(shma_view_init(&v, mem, "<f8", 2, NULL), -EINVAL);
	assert_int_equal(shma_view_init(&v, mem, "<f8", SHMA_MAXDIM + 1, big), -EINVAL);
	assert_int_equal(shma_view_init(&v, mem, "<f8", 3, huge), -EINVAL); /* stride overflow */
	assert_untouched(&v, &keep);
}

/* ---- slicing and indexing ----------------------------------------------------- */

static void test_slice_numpy(void **state)
{
	const struct slice_case *c;
	struct shma_view a, v;
	char got[100];
	int64_t *mem;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(slice_cases); i++) {
		c = &slice_cases[i];
		mem = arange(c->n);
		assert_int_equal(shma_view_init(&a, mem, "<i8", 1, &c->n), 0);
		assert_int_equal(shma_view_slice(&a, 0, c->start, c->stop, c->step, &v), 0);
		format_elements(&v, got, sizeof(got));
		if (strcmp(got, c->elems))
			fail_msg("n %" PRIu64 " [%" PRId64 ":%" PRId64 ":%" PRId64 "]: \"%s\", numpy \"%s\"",
				 c->n, c->start, c->stop, c->step, got, c->elems);
		if (v.shape[0] > 0)
			assert_int_equal(v.strides[0], 8 * c->step);
		else /* as numpy: an empty slice keeps data and stride */
			assert_true(v.data == a.data && v.strides[0] == 8);
		free(mem);
	}
}

static void test_slice(void **state)
{
	struct shma_view a, v, keep;
	int64_t *mem = arange(120);
	uint64_t lo, hi;

	(void)state;
	view_A(mem, &a);

	/* SHMA_END as start and stop: [::-1] */
	assert_int_equal(shma_view_slice(&a, 1, SHMA_END, SHMA_END, -1, &v), 0);
	assert_int_equal(v.shape[1], 5);
	assert_int_equal(v.strides[1], -48);
	assert_int_equal(offset_of(&v), 4 * 48);
	/* SHMA_END start, explicit stop, both directions */
	assert_int_equal(shma_view_slice(&a, 2, SHMA_END, 2, -1, &v), 0);
	assert_int_equal(v.shape[2], 3); /* 5 4 3 */
	assert_int_equal(offset_of(&v), 40);
	assert_int_equal(shma_view_slice(&a, 2, SHMA_END, 2, 1, &v), 0);
	assert_int_equal(v.shape[2], 2); /* 0 1 */
	assert_int_equal(offset_of(&v), 0);

	/* in place */
	v = a;
	assert_int_equal(shma_view_slice(&v, 0, 1, 3, 1, &v), 0);
	assert_int_equal(shma_view_slice(&v, 0, -1, SHMA_END, -1, &v), 0);
	assert_int_equal(v.shape[0], 2);
	assert_int_equal(v.strides[0], -240);
	assert_int_equal(offset_of(&v), 480);

	/* empty slices: data and stride stay, the extent is empty */
	assert_int_equal(shma_view_slice(&a, 1, 3, 1, 1, &v), 0);
	assert_int_equal(v.shape[1], 0);
	assert_int_equal(v.strides[1], 48);
	assert_ptr_equal(v.data, a.data);
	assert_int_equal(shma_view_size(&v), 0);
	assert_true(shma_view_is_contiguous(&v));
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, 0);
	assert_int_equal(shma_view_slice(&a, 1, 100, 200, 1, &v), 0);
	assert_int_equal(v.shape[1], 0);
	assert_int_equal(shma_view_slice(&v, 0, 2, SHMA_END, 1, &v), 0); /* then more */
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 480);
	assert_int_equal(hi, 480);

	/* huge steps select one element */
	assert_int_equal(shma_view_slice(&a, 0, 1, SHMA_END, INT64_MAX, &v), 0);
	assert_int_equal(v.shape[0], 1);
	assert_int_equal(offset_of(&v), 240);
	assert_int_equal(shma_view_slice(&a, 0, SHMA_END, SHMA_END, INT64_MIN, &v), 0);
	assert_int_equal(v.shape[0], 1);
	assert_int_equal(offset_of(&v), 720);
	assert_int_equal(shma_view_slice(&a, 0, INT64_MIN + 1, INT64_MAX, 1, &v), 0);
	assert_int_equal(v.shape[0], 4);

	poison(&v, &keep);
	assert_int_equal(shma_view_slice(&a, 0, 0, 4, 0, &v), -EINVAL);
	assert_int_equal(shma_view_slice(&a, 3, 0, 4, 1, &v), -EINVAL);
	assert_untouched(&v, &keep);
	free(mem);
}

static void test_index(void **state)
{
	static const uint64_t s56[] = { 5, 6 }, s45[] = { 4, 5 };
	static const int64_t st56[] = { 48, 8 }, st45[] = { 240, 48 };
	struct shma_view a, v, keep;
	int64_t *mem = arange(120);

	(void)state;
	view_A(mem, &a);
	assert_int_equal(shma_view_index(&a, 0, -1, &v), 0);
	assert_layout(&v, 2, s56, st56);
	assert_int_equal(offset_of(&v), 720);
	assert_int_equal(shma_view_index(&a, 0, -4, &v), 0);
	assert_int_equal(offset_of(&v), 0);
	assert_int_equal(shma_view_index(&a, 2, 5, &v), 0);
	assert_layout(&v, 2, s45, st45);
	assert_int_equal(offset_of(&v), 40);

	/* down to 0-d, in place */
	v = a;
	assert_int_equal(shma_view_index(&v, 1, 3, &v), 0);
	assert_int_equal(shma_view_index(&v, 1, -2, &v), 0);
	assert_int_equal(shma_view_index(&v, 0, 2, &v), 0);
	assert_int_equal(v.ndim, 0);
	assert_int_equal(*(int64_t *)shma_view_ptr(&v, NULL), 2 * 30 + 3 * 6 + 4);
	assert_int_equal(shma_view_size(&v), 1);
	assert_true(shma_view_is_contiguous(&v));

	poison(&v, &keep);
	assert_int_equal(shma_view_index(&a, 0, 4, &v), -ERANGE);
	assert_int_equal(shma_view_index(&a, 0, -5, &v), -ERANGE);
	assert_int_equal(shma_view_index(&a, 2, INT64_MIN, &v), -ERANGE);
	assert_int_equal(shma_view_index(&a, 2, INT64_MAX, &v), -ERANGE);
	assert_int_equal(shma_view_index(&a, 3, 0, &v), -EINVAL);
	assert_untouched(&v, &keep);
	assert_int_equal(shma_view_slice(&a, 1, 0, 0, 1, &v), 0);
	assert_int_equal(shma_view_index(&v, 1, 0, &v), -ERANGE); /* empty axis */
	free(mem);
}

/* ---- index expressions ------------------------------------------------------- */

static void test_subscript_numpy(void **state)
{
	const struct subscript_case *c;
	struct shma_view a, v;
	int64_t *mem = arange(120);
	size_t i;

	(void)state;
	view_A(mem, &a);
	for (i = 0; i < ARRAY_SIZE(subscript_cases); i++) {
		c = &subscript_cases[i];
		subscript_ok(&a, c->expr, &v);
		if (v.ndim != c->ndim || offset_of(&v) != c->offset)
			fail_msg("\"%s\": ndim %u offset %" PRId64 ", numpy %u %" PRId64, c->expr,
				 v.ndim, offset_of(&v), c->ndim, c->offset);
		assert_layout(&v, c->ndim, c->shape, c->strides);
		assert_ptr_equal(v.base, mem);
		assert_string_equal(v.dtype, "<i8");
	}
	free(mem);
}

static const struct {
	const char *expr;
	int err;
	const char *why;
} subscript_errors[] = {
	{ "1:2:3:4", -EINVAL, "column 6: a slice has at most two ':'" },
	{ ":::", -EINVAL, "column 3: a slice has at most two ':'" },
	{ "1 2", -EINVAL, "column 3: expected ',' or the end" },
	{ "1.5", -EINVAL, "column 2: expected ',' or the end" },
	{ "0:1:-", -EINVAL, "column 5: expected ',' or the end" },
	{ "(1)", -EINVAL, "column 1: expected an integer, a slice or '...'" },
	{ "(", -EINVAL, "column 1: expected an integer, a slice or '...'" },
	{ "abc", -EINVAL, "column 1: expected an integer, a slice or '...'" },
	{ "None", -EINVAL, "column 1: expected an integer, a slice or '...'" },
	{ "-", -EINVAL, "column 1: expected an integer, a slice or '...'" },
	{ "+ :", -EINVAL, "column 1: expected an integer, a slice or '...'" },
	{ "1,,2", -EINVAL, "column 3: expected an integer, a slice or '...'" },
	{ ",", -EINVAL, "column 1: expected an integer, a slice or '...'" },
	{ " , 1", -EINVAL, "column 2: expected an integer, a slice or '...'" },
	{ "..", -EINVAL, "column 1: expected an integer, a slice or '...'" },
	{ "..., ...", -EINVAL, "column 6: an index can only have a single ellipsis ('...')" },
	{ "1,2,3,4", -EINVAL, "column 7: too many indices: the view is 3-dimensional" },
	{ "..., :, :, :, :", -EINVAL, "column 15: too many indices: the view is 3-dimensional" },
	{ "::0", -EINVAL, "column 3: slice step cannot be zero" },
	{ "1:2: -0", -EINVAL, "column 6: slice step cannot be zero" },
	{ "9223372036854775808", -EINVAL, "column 1: integer does not fit in 64 bits" },
	{ ":-9223372036854775809", -EINVAL, "column 2: integer does not fit in 64 bits" },
	{ "::99999999999999999999", -EINVAL, "column 3: integer does not fit in 64 bits" },
	{ "4", -ERANGE, "column 1: index 4 is out of bounds for axis 0 with size 4" },
	{ "1, -6", -ERANGE, "column 4: index -6 is out of bounds for axis 1 with size 5" },
	{ "..., 6", -ERANGE, "column 6: index 6 is out of bounds for axis 2 with size 6" },
	{ "::-1, ..., -7", -ERANGE, "column 12: index -7 is out of bounds for axis 2 with size 6" },
	{ "-9223372036854775808", -ERANGE,
	  "column 1: index -9223372036854775808 is out of bounds for axis 0 with size 4" },
};

static void test_subscript_errors(void **state)
{
	struct shma_view a, v, keep;
	int64_t *mem = arange(120);
	char why[200], small[8];
	size_t i;

	(void)state;
	view_A(mem, &a);
	poison(&v, &keep);
	for (i = 0; i < ARRAY_SIZE(subscript_errors); i++) {
		strcpy(why, "stale");
		assert_int_equal(shma_view_subscript(&a, subscript_errors[i].expr, &v, why,
						     sizeof(why)),
				 subscript_errors[i].err);
		if (strcmp(why, subscript_errors[i].why))
			fail_msg("\"%s\": why \"%s\", want \"%s\"", subscript_errors[i].expr, why,
				 subscript_errors[i].why);
		assert_untouched(&v, &keep);
		/* why is optional, and cut to its size */
		assert_int_equal(shma_view_subscript(&a, subscript_errors[i].expr, &v, NULL, 0),
				 subscript_errors[i].err);
		assert_int_equal(shma_view_subscript(&a, subscript_errors[i].expr, &v, small,
						     sizeof(small)),
				 subscript_errors[i].err);
		assert_string_equal(small, "column ");
	}
	assert_int_equal(shma_view_subscript(&a, NULL, &v, why, sizeof(why)), -EINVAL);
	assert_untouched(&v, &keep);

	/* success clears why; in place works */
	strcpy(why, "stale");
	v = a;
	assert_int_equal(shma_view_subscript(&v, "1:, ::-1", &v, why, sizeof(why)), 0);
	assert_string_equal(why, "");
	assert_int_equal(shma_view_subscript(&v, "-1, 0", &v, why, sizeof(why)), 0);
	assert_int_equal(v.ndim, 1);
	assert_int_equal(offset_of(&v), 3 * 240 + 4 * 48);

	/* a 0-d view takes only empty expressions and "..." */
	assert_int_equal(shma_view_index(&v, 0, 0, &v), 0);
	assert_int_equal(shma_view_subscript(&v, "", &v, why, sizeof(why)), 0);
	assert_int_equal(shma_view_subscript(&v, "...", &v, why, sizeof(why)), 0);
	assert_int_equal(shma_view_subscript(&v, "()", &v, why, sizeof(why)), 0);
	assert_int_equal(v.ndim, 0);
	assert_int_equal(shma_view_subscript(&v, ":", &v, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "column 1: too many indices: the view is 0-dimensional");
	free(mem);
}

/* ---- transpose ---------------------------------------------------------------- */

static int64_t expect_T(const uint64_t *idx) /* A.T */
{
	return (int64_t)(idx[2] * 30 + idx[1] * 6 + idx[0]);
}

static int64_t expect_201(const uint64_t *idx) /* A.transpose(2, 0, 1) */
{
	return (int64_t)(idx[1] * 30 + idx[2] * 6 + idx[0]);
}

static void test_transpose(void **state)
{
	static const unsigned p201[] = { 2, 0, 1 }, dup[] = { 0, 1, 1 }, big[] = { 0, 1, 3 };
	static const uint64_t s654[] = { 6, 5, 4 }, s645[] = { 6, 4, 5 };
	static const int64_t st654[] = { 8, 48, 240 }, st645[] = { 8, 240, 48 };
	struct shma_view a, v, keep;
	int64_t *mem = arange(120);

	(void)state;
	view_A(mem, &a);
	assert_int_equal(shma_view_transpose(&a, NULL, &v), 0);
	assert_layout(&v, 3, s654, st654);
	assert_ptr_equal(v.data, a.data);
	assert_false(shma_view_is_contiguous(&v));
	check_elements(&v, expect_T);
	assert_int_equal(shma_view_transpose(&v, NULL, &v), 0); /* .T.T, in place */
	assert_view_equal(&v, &a);

	assert_int_equal(shma_view_transpose(&a, p201, &v), 0);
	assert_layout(&v, 3, s645, st645);
	check_elements(&v, expect_201);

	poison(&v, &keep);
	assert_int_equal(shma_view_transpose(&a, dup, &v), -EINVAL);
	assert_int_equal(shma_view_transpose(&a, big, &v), -EINVAL);
	assert_untouched(&v, &keep);

	/* 0-d and 1-d: nothing moves */
	assert_int_equal(shma_view_subscript(&a, "1, 2, :", &v, NULL, 0), 0);
	keep = v;
	assert_int_equal(shma_view_transpose(&v, NULL, &v), 0);
	assert_view_equal(&v, &keep);
	assert_int_equal(shma_view_index(&v, 0, 1, &v), 0);
	assert_int_equal(shma_view_transpose(&v, NULL, &v), 0);
	assert_int_equal(v.ndim, 0);
	free(mem);
}

/* ---- reshape ------------------------------------------------------------------ */

static void test_reshape_numpy(void **state)
{
	const struct reshape_case *c;
	struct shma_view a, in, v, keep;
	int64_t *mem = arange(120);
	size_t i;
	int err;

	(void)state;
	view_A(mem, &a);
	for (i = 0; i < ARRAY_SIZE(reshape_cases); i++) {
		c = &reshape_cases[i];
		subscript_ok(&a, c->expr, &in);
		poison(&v, &keep);
		err = shma_view_reshape(&in, c->ndim, c->shape, &v);
		if (err != c->err)
			fail_msg("A[%s] reshape #%zu: %d, numpy %d", c->expr, i, err, c->err);
		if (err) {
			assert_untouched(&v, &keep);
			continue;
		}
		assert_layout(&v, c->out_ndim, c->out_shape, c->out_strides);
		assert_ptr_equal(v.data, in.data);
		assert_same_elements(&v, &in);
	}
	free(mem);
}

static void test_reshape(void **state)
{
	static const unsigned p201[] = { 2, 0, 1 };
	static const uint64_t s120[] = { 120 }, s6_20[] = { 6, 20 }, s645[] = { 6, 4, 5 };
	static const uint64_t s3_2_20[] = { 3, 2, 20 }, s6_2_10[] = { 6, 2, 10 };
	static const uint64_t s30_4[] = { 30, 4 }, s654[] = { 6, 5, 4 };
	static const int64_t st6_20[] = { 8, 48 }, st645[] = { 8, 240, 48 };
	static const int64_t st3_2_20[] = { 16, 8, 48 }, st6_2_10[] = { 8, 480, 48 };
	static const int64_t st654[] = { 8, 48, 240 };
	static const uint64_t two_infer[] = { SHMA_INFER, 2, SHMA_INFER };
	static const uint64_t infer7[] = { 7, SHMA_INFER }, infer0[] = { 0, SHMA_INFER };
	static const uint64_t wrong[] = { 11, 11 }, zero[] = { 2, 0, 3 };
	static const uint64_t s0_big[] = { 0, 1ull << 62, 1ull << 62 };
	uint64_t ones[SHMA_MAXDIM + 1];
	struct shma_view a, t, v, keep;
	int64_t *mem = arange(120);
	unsigned i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(ones); i++)
		ones[i] = 1;
	view_A(mem, &a);

	/* transposes (numpy: v = A.transpose(2, 0, 1).view(); v.shape = ...) */
	assert_int_equal(shma_view_transpose(&a, p201, &t), 0);
	assert_int_equal(shma_view_reshape(&t, 2, s6_20, &v), 0);
	assert_layout(&v, 2, s6_20, st6_20);
	assert_same_elements(&v, &t);
	assert_int_equal(shma_view_reshape(&t, 3, s645, &v), 0);
	assert_layout(&v, 3, s645, st645);
	assert_int_equal(shma_view_reshape(&t, 3, s3_2_20, &v), 0);
	assert_layout(&v, 3, s3_2_20, st3_2_20);
	assert_same_elements(&v, &t);
	assert_int_equal(shma_view_reshape(&t, 3, s6_2_10, &v), 0);
	assert_layout(&v, 3, s6_2_10, st6_2_10);
	assert_same_elements(&v, &t);
	poison(&v, &keep);
	assert_int_equal(shma_view_reshape(&t, 1, s120, &v), -ENOTSUP);
	assert_untouched(&v, &keep);
	assert_int_equal(shma_view_transpose(&a, NULL, &t), 0);
	assert_int_equal(shma_view_reshape(&t, 2, s30_4, &v), -ENOTSUP);
	assert_int_equal(shma_view_reshape(&t, 1, s120, &v), -ENOTSUP);
	assert_int_equal(shma_view_reshape(&t, 3, s654, &v), 0);
	assert_layout(&v, 3, s654, st654);

	/* a transposed 2-D view cannot be flattened; its transpose can */
	assert_int_equal(shma_view_subscript(&a, "0", &v, NULL, 0), 0);
	assert_int_equal(shma_view_transpose(&v, NULL, &t), 0);
	assert_int_equal(shma_view_reshape(&t, 1, &(uint64_t){ 30 }, &v), -ENOTSUP);
	assert_int_equal(shma_view_transpose(&t, NULL, &t), 0);
	assert_int_equal(shma_view_reshape(&t, 1, &(uint64_t){ 30 }, &v), 0);
	assert_int_equal(v.strides[0], 8);

	/* in place */
	v = a;
	assert_int_equal(shma_view_reshape(&v, 1, s120, &v), 0);
	assert_int_equal(v.strides[0], 8);
	assert_int_equal(shma_view_reshape(&v, 0, NULL, &v), -EINVAL);

	/* sizes */
	poison(&v, &keep);
	assert_int_equal(shma_view_reshape(&a, 3, two_infer, &v), -EINVAL);
	assert_int_equal(shma_view_reshape(&a, 2, infer7, &v), -EINVAL);
	assert_int_equal(shma_view_reshape(&a, 2, wrong, &v), -EINVAL);
	assert_int_equal(shma_view_reshape(&a, 3, zero, &v), -EINVAL);
	assert_int_equal(shma_view_reshape(&a, SHMA_MAXDIM + 1, ones, &v), -EINVAL);
	assert_int_equal(shma_view_reshape(&a, 2, NULL, &v), -EINVAL);
	assert_untouched(&v, &keep);

	/* empty views: any shape of size 0, but no inferring from 0 */
	assert_int_equal(shma_view_slice(&a, 1, 2, 2, 1, &t), 0);
	assert_int_equal(shma_view_reshape(&t, 3, zero, &v), 0);
	assert_int_equal(v.strides[0], 24);
	assert_int_equal(v.strides[1], 24);
	assert_int_equal(v.strides[2], 8);
	assert_int_equal(shma_view_reshape(&t, 2, infer0, &v), -EINVAL);
	assert_int_equal(shma_view_reshape(&t, 3, s0_big, &v), -EINVAL); /* stride overflow */

	/* 32 ones */
	assert_int_equal(shma_view_index(&a, 0, 1, &t), 0);
	assert_int_equal(shma_view_subscript(&t, "2, 3", &t, NULL, 0), 0);
	assert_int_equal(shma_view_reshape(&t, SHMA_MAXDIM, ones, &v), 0);
	assert_int_equal(*(int64_t *)shma_view_ptr(&v, (uint64_t[SHMA_MAXDIM]){ 0 }), 30 + 12 + 3);
	free(mem);
}

/* ---- astype ------------------------------------------------------------------- */

static void test_astype_numpy(void **state)
{
	const struct astype_case *c;
	struct shma_view a, in, v, keep;
	int64_t *mem = arange(120);
	size_t i;
	int err;

	(void)state;
	view_A(mem, &a);
	for (i = 0; i < ARRAY_SIZE(astype_cases); i++) {
		c = &astype_cases[i];
		subscript_ok(&a, c->expr, &in);
		poison(&v, &keep);
		err = shma_view_astype(&in, c->dtype, &v);
		if (err != c->err)
			fail_msg("A[%s].view(%s): %d, numpy %d", c->expr, c->dtype, err, c->err);
		if (err) {
			assert_untouched(&v, &keep);
			continue;
		}
		assert_layout(&v, c->ndim, c->shape, c->strides);
		assert_int_equal(offset_of(&v), c->offset);
		assert_string_equal(v.dtype, c->dtype);
	}
	free(mem);
}

static void test_astype(void **state)
{
	static const uint64_t s4[] = { 4 }, s22[] = { 2, 2 };
	struct shma_view v, w, keep;
	double d[4] = { 1.5, -2.0, 0.0, 1e300 };
	int32_t i4[6] = { 1, 2, 3, 4, 5, 6 };
	uint64_t i, lo, hi;

	(void)state;
	/* f8 -> u1: the bytes */
	assert_int_equal(shma_view_init(&v, d, "<f8", 1, s4), 0);
	assert_int_equal(shma_view_astype(&v, "|u1", &w), 0);
	assert_int_equal(w.ndim, 1);
	assert_int_equal(w.shape[0], 32);
	assert_int_equal(w.strides[0], 1);
	assert_int_equal(w.itemsize, 1);
	for (i = 0; i < 32; i++)
		assert_int_equal(*(uint8_t *)shma_view_ptr(&w, &i), ((uint8_t *)d)[i]);
	shma_view_extent(&w, &lo, &hi);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, 32);
	/* and back, in place */
	assert_int_equal(shma_view_astype(&w, "<f8", &w), 0);
	assert_view_equal(&w, &v);
	/* same size: just the label ("=" normalised) */
	assert_int_equal(shma_view_astype(&v, "=i8", &w), 0);
	assert_string_equal(w.dtype, __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? ">i8" : "<i8");
	assert_int_equal(w.shape[0], 4);

	/* i4 -> i8 needs an even last dimension */
	assert_int_equal(shma_view_init(&v, i4, "<i4", 2, (uint64_t[]){ 2, 3 }), 0);
	poison(&w, &keep);
	assert_int_equal(shma_view_astype(&v, "<i8", &w), -EINVAL);
	assert_untouched(&w, &keep);
	assert_int_equal(shma_view_init(&v, i4, "<i4", 2, (uint64_t[]){ 3, 2 }), 0);
	assert_int_equal(shma_view_astype(&v, "<i8", &w), 0);
	assert_int_equal(w.shape[0], 3);
	assert_int_equal(w.shape[1], 1);
	assert_int_equal(w.strides[0], 8);
	assert_int_equal(w.strides[1], 8);

	/* non-contiguous last axis */
	assert_int_equal(shma_view_init(&v, i4, "<i4", 1, (uint64_t[]){ 6 }), 0);
	assert_int_equal(shma_view_slice(&v, 0, SHMA_END, SHMA_END, 2, &v), 0);
	assert_int_equal(shma_view_astype(&v, "<i2", &w), -ENOTSUP);
	assert_int_equal(shma_view_astype(&v, "<u4", &w), 0); /* same size: fine */
	assert_int_equal(w.strides[0], 8);
	assert_int_equal(shma_view_slice(&v, 0, SHMA_END, SHMA_END, -1, &v), 0);
	assert_int_equal(shma_view_astype(&v, "|i1", &w), -ENOTSUP);

	/* 0-d: same size only; bad dtypes */
	assert_int_equal(shma_view_init(&v, d, "<f8", 0, NULL), 0);
	assert_int_equal(shma_view_astype(&v, "<i4", &w), -EINVAL);
	assert_int_equal(shma_view_astype(&v, "<c8", &w), 0);
	assert_int_equal(shma_view_init(&v, d, "<f8", 2, s22), 0);
	assert_int_equal(shma_view_astype(&v, "<f9", &w), -EINVAL);
	assert_int_equal(shma_view_astype(&v, "f8", &w), -EINVAL);
	assert_int_equal(shma_view_astype(&v, NULL, &w), -EINVAL);
}

/* ---- queries ------------------------------------------------------------------ */

static void test_extent_numpy(void **state)
{
	const struct extent_case *c;
	struct shma_view a, v;
	int64_t *mem = arange(120);
	uint64_t lo, hi;
	size_t i;

	(void)state;
	view_A(mem, &a);
	for (i = 0; i < ARRAY_SIZE(extent_cases); i++) {
		c = &extent_cases[i];
		subscript_ok(&a, c->expr, &v);
		shma_view_extent(&v, &lo, &hi);
		if (lo != c->lo || hi != c->hi)
			fail_msg("A[%s]: extent [%" PRIu64 ", %" PRIu64 "), numpy [%" PRIu64 ", %" PRIu64 ")",
				 c->expr, lo, hi, c->lo, c->hi);
		assert_int_equal(shma_view_is_contiguous(&v), c->contiguous);
	}
	free(mem);
}

static void test_extent(void **state)
{
	struct shma_view a, v;
	int64_t *mem = arange(120);
	uint64_t lo, hi;

	(void)state;
	view_A(mem, &a);
	/* empty views: where data is, whatever else is there */
	assert_int_equal(shma_view_subscript(&a, "::-1, 4:4", &v, NULL, 0), 0);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 720);
	assert_int_equal(hi, 720);
	assert_int_equal(shma_view_subscript(&a, "2, ::-1, 5:1", &v, NULL, 0), 0);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 480 + 4 * 48);
	assert_int_equal(hi, lo);
	assert_true(shma_view_is_contiguous(&v));

	/* transposed and reversed: the same bytes */
	assert_int_equal(shma_view_subscript(&a, "1:3, ::-2, 1:", &v, NULL, 0), 0);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 240 + 8);
	assert_int_equal(hi, 2 * 240 + 4 * 48 + 6 * 8);
	assert_int_equal(shma_view_transpose(&v, NULL, &v), 0);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 240 + 8);
	assert_int_equal(hi, 2 * 240 + 4 * 48 + 6 * 8);

	/* a 0-d view: one item */
	assert_int_equal(shma_view_subscript(&a, "-1, -1, -1", &v, NULL, 0), 0);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 952);
	assert_int_equal(hi, 960);
	free(mem);
}

static void test_contiguous(void **state)
{
	struct shma_view a, v;
	int64_t *mem = arange(120);

	(void)state;
	view_A(mem, &a);
	assert_true(shma_view_is_contiguous(&a));
	/* size-1 axes' strides do not matter */
	assert_int_equal(shma_view_subscript(&a, "1:2, 3:4, :", &v, NULL, 0), 0);
	assert_true(shma_view_is_contiguous(&v));
	v.strides[0] = 12345;
	v.strides[1] = -8;
	assert_true(shma_view_is_contiguous(&v));
	v.strides[2] = 16;
	assert_false(shma_view_is_contiguous(&v));
	/* empty views are contiguous whatever their strides */
	v.shape[0] = 0;
	assert_true(shma_view_is_contiguous(&v));
	assert_int_equal(shma_view_size(&v), 0);
	/* F order is not C order */
	assert_int_equal(shma_view_transpose(&a, NULL, &v), 0);
	assert_false(shma_view_is_contiguous(&v));
	/* a row of a sliced array is */
	assert_int_equal(shma_view_subscript(&a, "::2, 1", &v, NULL, 0), 0);
	assert_false(shma_view_is_contiguous(&v));
	assert_int_equal(shma_view_index(&v, 0, 1, &v), 0);
	assert_true(shma_view_is_contiguous(&v));
	free(mem);
}

/* ---- chains ------------------------------------------------------------------- */

/* A.reshape(20, 6).T[1:5:2, ::-3] */
static int64_t expect_chain1(const uint64_t *idx)
{
	return (int64_t)((19 - 3 * idx[1]) * 6 + 1 + 2 * idx[0]);
}

/* A[::-1, 1:4, ::2].transpose(2, 0, 1)[:, -2] */
static int64_t expect_chain2(const uint64_t *idx)
{
	return (int64_t)((3 - 2) * 30 + (1 + idx[1]) * 6 + 2 * idx[0]);
}

/* A.reshape(2, 2, 30)[1, ::-1].reshape(2, 5, 6)[..., 4:0:-2] */
static int64_t expect_chain3(const uint64_t *idx)
{
	return (int64_t)(60 + (1 - idx[0]) * 30 + idx[1] * 6 + 4 - 2 * idx[2]);
}

/* Chains of views, element by element against the index arithmetic of their
 * NumPy spelling. */
static void test_chains(void **state)
{
	static const unsigned p201[] = { 2, 0, 1 };
	struct shma_view a, v;
	int64_t *mem = arange(120);
	uint64_t idx[2], lo, hi;

	(void)state;
	view_A(mem, &a);

	assert_int_equal(shma_view_reshape(&a, 2, (uint64_t[]){ 20, 6 }, &v), 0);
	assert_int_equal(shma_view_transpose(&v, NULL, &v), 0);
	assert_int_equal(shma_view_slice(&v, 0, 1, 5, 2, &v), 0);
	assert_int_equal(shma_view_slice(&v, 1, SHMA_END, SHMA_END, -3, &v), 0);
	assert_int_equal(v.shape[0], 2);
	assert_int_equal(v.shape[1], 7);
	check_elements(&v, expect_chain1);
	assert_int_equal(shma_view_reshape(&v, 1, (uint64_t[]){ 14 }, &v), -ENOTSUP);

	assert_int_equal(shma_view_subscript(&a, "::-1, 1:4, ::2", &v, NULL, 0), 0);
	assert_int_equal(shma_view_transpose(&v, p201, &v), 0);
	assert_int_equal(shma_view_index(&v, 1, -2, &v), 0);
	assert_int_equal(v.shape[0], 3);
	assert_int_equal(v.shape[1], 3);
	check_elements(&v, expect_chain2);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 30 * 8 + 6 * 8);
	assert_int_equal(hi, 30 * 8 + 18 * 8 + 4 * 8 + 8);

	assert_int_equal(shma_view_reshape(&a, 3, (uint64_t[]){ 2, 2, SHMA_INFER }, &v), 0);
	assert_int_equal(shma_view_subscript(&v, "1, ::-1", &v, NULL, 0), 0);
	assert_int_equal(shma_view_reshape(&v, 3, (uint64_t[]){ 2, 5, 6 }, &v), 0);
	assert_int_equal(shma_view_subscript(&v, "..., 4:0:-2", &v, NULL, 0), 0);
	assert_int_equal(v.shape[2], 2);
	check_elements(&v, expect_chain3);

	/* A.view(u1)[..., ::8].reshape(20, 6)[7:12].T: the low byte of each
	 * value (little-endian) is the value */
	if (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) {
		assert_int_equal(shma_view_astype(&a, "|u1", &v), 0);
		assert_int_equal(shma_view_subscript(&v, "..., ::8", &v, NULL, 0), 0);
		assert_int_equal(shma_view_reshape(&v, 2, (uint64_t[]){ 20, 6 }, &v), 0);
		assert_int_equal(shma_view_subscript(&v, "7:12", &v, NULL, 0), 0);
		assert_int_equal(shma_view_transpose(&v, NULL, &v), 0);
		for (idx[0] = 0; idx[0] < 6; idx[0]++)
			for (idx[1] = 0; idx[1] < 5; idx[1]++)
				assert_int_equal(*(uint8_t *)shma_view_ptr(&v, idx),
						 (7 + idx[1]) * 6 + idx[0]);
	}
	free(mem);
}

/* ---- edges -------------------------------------------------------------------- */

/* Elements across a 4096-byte block boundary: only address arithmetic. */
static void test_block_boundary(void **state)
{
	struct shma_view a, v;
	int64_t *mem = arange(3 * 512);
	uint64_t i, lo, hi;

	(void)state;
	assert_int_equal(shma_view_init(&a, mem, "<i8", 1, (uint64_t[]){ 3 * 512 }), 0);
	assert_int_equal(shma_view_subscript(&a, "510:514", &v, NULL, 0), 0);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 4080);
	assert_int_equal(hi, 4112);
	i = 2;
	assert_ptr_equal(shma_view_ptr(&v, &i), (char *)mem + 4096);
	assert_int_equal(*(int64_t *)shma_view_ptr(&v, &i), 512);

	/* one c16 straddling the boundary */
	assert_int_equal(shma_view_subscript(&a, "511:513", &v, NULL, 0), 0);
	assert_int_equal(shma_view_astype(&v, "<c16", &v), 0);
	assert_int_equal(v.shape[0], 1);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 4088);
	assert_int_equal(hi, 4104);

	/* blocks as rows, walked backwards: the last column of each */
	assert_int_equal(shma_view_reshape(&a, 2, (uint64_t[]){ 3, 512 }, &v), 0);
	assert_int_equal(shma_view_subscript(&v, "::-1, -1", &v, NULL, 0), 0);
	assert_int_equal(v.strides[0], -4096);
	for (i = 0; i < 3; i++)
		assert_int_equal(*(int64_t *)shma_view_ptr(&v, &i), (2 - i) * 512 + 511);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 4088);
	assert_int_equal(hi, 3 * 4096);
	free(mem);
}

/* A.reshape(...) with 32 axes, 7 of them of 2 (i % 5 == 0), reversed. */
static int64_t expect_rev32(const uint64_t *idx)
{
	int64_t flat = 0;
	unsigned i;

	for (i = 0; i < SHMA_MAXDIM; i++)
		if (i % 5 == 0)
			flat = flat * 2 + (int64_t)idx[SHMA_MAXDIM - 1 - i];
	return flat;
}

static void test_32_dims(void **state)
{
	uint64_t shape[SHMA_MAXDIM], idx[SHMA_MAXDIM], lo, hi;
	struct shma_view v, t, keep;
	char expr[SHMA_MAXDIM * 3 + 8];
	int64_t *mem = arange(128);
	const size_t len = 1ull << 32;
	unsigned i;
	char *big;

	(void)state;
	for (i = 0; i < SHMA_MAXDIM; i++)
		shape[i] = i % 5 == 0 ? 2 : 1;
	assert_int_equal(shma_view_init(&v, mem, "<i8", SHMA_MAXDIM, shape), 0);
	assert_int_equal(shma_view_transpose(&v, NULL, &t), 0);
	check_elements(&t, expect_rev32);
	assert_false(shma_view_is_contiguous(&t));
	assert_int_equal(shma_view_reshape(&t, 1, (uint64_t[]){ SHMA_INFER }, &keep), -ENOTSUP);
	assert_int_equal(shma_view_reshape(&v, 1, (uint64_t[]){ SHMA_INFER }, &t), 0);
	assert_int_equal(t.shape[0], 128);
	assert_int_equal(shma_view_reshape(&t, SHMA_MAXDIM, shape, &t), 0);
	assert_view_equal(&t, &v);

	/* 32 axes of 2 over 4 GiB of address space (never touched) */
	big = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(big != MAP_FAILED);
	for (i = 0; i < SHMA_MAXDIM; i++)
		shape[i] = 2;
	assert_int_equal(shma_view_init(&v, big, "|u1", SHMA_MAXDIM, shape), 0);
	assert_int_equal(shma_view_size(&v), len);
	assert_int_equal(v.strides[0], 1ll << 31);
	for (i = 0; i < SHMA_MAXDIM; i++)
		idx[i] = 1;
	assert_ptr_equal(shma_view_ptr(&v, idx), big + len - 1);
	shma_view_extent(&v, &lo, &hi);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, len);
	assert_int_equal(shma_view_subscript(&v, "..., ::-1", &t, NULL, 0), 0);
	assert_int_equal(offset_of(&t), 1);
	assert_ptr_equal(shma_view_ptr(&t, idx), big + len - 2);
	shma_view_extent(&t, &lo, &hi);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, len);

	/* 32 integers index down to 0-d; 33 is too many */
	strcpy(expr, "1");
	for (i = 1; i < SHMA_MAXDIM; i++)
		strcat(expr, i % 2 ? ",0" : ",1");
	assert_int_equal(shma_view_subscript(&v, expr, &t, NULL, 0), 0);
	assert_int_equal(t.ndim, 0);
	assert_int_equal(offset_of(&t), 0xaaaaaaaa); /* 1 on the even axes */
	strcat(expr, ",0");
	assert_int_equal(shma_view_subscript(&v, expr, &t, NULL, 0), -EINVAL);

	/* reversed, then flattened: not without a copy */
	assert_int_equal(shma_view_transpose(&v, NULL, &t), 0);
	assert_int_equal(shma_view_reshape(&t, 1, &(uint64_t){ len }, &keep), -ENOTSUP);
	assert_int_equal(shma_view_reshape(&v, 1, &(uint64_t){ len }, &t), 0);
	assert_int_equal(t.strides[0], 1);
	assert_int_equal(munmap(big, len), 0);
	free(mem);
}

/* Views no function made: rejected or answered safely, never UB. */
static void test_bad_views(void **state)
{
	struct shma_view v, w;
	int64_t mem[4] = { 0 };
	uint64_t lo, hi, idx[2] = { 1, 1 };

	(void)state;
	assert_int_equal(shma_view_init(&v, mem, "<i8", 1, (uint64_t[]){ 4 }), 0);
	w = v;
	w.itemsize = 0;
	assert_int_equal(shma_view_slice(&w, 0, 0, 1, 1, &w), -EINVAL);
	assert_false(shma_view_is_contiguous(&w));
	w = v;
	w.ndim = SHMA_MAXDIM + 1;
	assert_int_equal(shma_view_index(&w, 0, 0, &w), -EINVAL);
	assert_int_equal(shma_view_transpose(&w, NULL, &w), -EINVAL);
	assert_int_equal(shma_view_reshape(&w, 1, (uint64_t[]){ 4 }, &w), -EINVAL);
	assert_int_equal(shma_view_astype(&w, "<f8", &w), -EINVAL);
	assert_int_equal(shma_view_subscript(&w, "", &w, NULL, 0), -EINVAL);
	assert_null(shma_view_ptr(&w, idx));
	assert_int_equal(shma_view_size(&w), 0);
	shma_view_extent(&w, &lo, &hi);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, UINT64_MAX);
	w = v;
	w.shape[0] = UINT64_MAX;
	assert_int_equal(shma_view_slice(&w, 0, 0, 1, 1, &w), -EINVAL);
	/* strides that overflow */
	w = v;
	w.ndim = 2;
	w.shape[0] = w.shape[1] = 4;
	w.strides[0] = INT64_MAX;
	w.strides[1] = 8;
	assert_null(shma_view_ptr(&w, idx));
	assert_int_equal(shma_view_index(&w, 0, 3, &v), -EINVAL);
	shma_view_extent(&w, &lo, &hi);
	assert_int_equal(lo, 0);
	assert_int_equal(hi, UINT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_slice_numpy),
		cmocka_unit_test(test_slice),
		cmocka_unit_test(test_index),
		cmocka_unit_test(test_subscript_numpy),
		cmocka_unit_test(test_subscript_errors),
		cmocka_unit_test(test_transpose),
		cmocka_unit_test(test_reshape_numpy),
		cmocka_unit_test(test_reshape),
		cmocka_unit_test(test_astype_numpy),
		cmocka_unit_test(test_astype),
		cmocka_unit_test(test_extent_numpy),
		cmocka_unit_test(test_extent),
		cmocka_unit_test(test_contiguous),
		cmocka_unit_test(test_chains),
		cmocka_unit_test(test_block_boundary),
		cmocka_unit_test(test_32_dims),
		cmocka_unit_test(test_bad_views),
	};

	return cmocka_run_group_tests_name("view", tests, NULL, NULL);
}
