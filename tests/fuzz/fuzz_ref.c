/* fuzz_ref.c - libFuzzer harness for shma_ref_decode (libshm/aref.c).
 *
 * The input is the ArrayRef JSON text.  A ref that decodes must encode and
 * decode back to the same ref (any difference aborts), and a refusal must
 * leave a NUL-terminated reason.  Nothing touches the file system.
 */
#include "shma.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
	fprintf(stderr, "fuzz_ref: %s\n", what);
	abort();
}

static bool same_ref(const struct shma_ref *a, const struct shma_ref *b)
{
	if (strcmp(a->store, b->store) || strcmp(a->socket, b->socket) ||
	    strcmp(a->array, b->array) || strcmp(a->dtype, b->dtype) ||
	    a->revision != b->revision || a->ndim != b->ndim || a->offset != b->offset ||
	    a->lo != b->lo || a->hi != b->hi)
		return false;
	for (unsigned i = 0; i < a->ndim && i < SHMA_MAXDIM; i++)
		if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i])
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shma_ref r, r2;
	char why[256], *json;
	size_t len;
	int err;

	memset(why, 'x', sizeof(why));
	err = shma_ref_decode((const char *)data, size, &r, why, sizeof(why));
	if (err) {
		if (err != SHMA_EBADREF)
			die("decode failed with a code other than SHMA_EBADREF");
		if (!memchr(why, 0, sizeof(why)))
			die("the reason is not NUL-terminated");
		return 0;
	}
	if (r.ndim > SHMA_MAXDIM)
		die("decoded ndim > SHMA_MAXDIM");
	err = shma_ref_encode(&r, &json, &len);
	if (err)
		die("a decoded ref does not encode");
	err = shma_ref_decode(json, len, &r2, why, sizeof(why));
	free(json);
	if (err) {
		fprintf(stderr, "fuzz_ref: re-decode: %s\n", why);
		die("an encoded ref does not decode");
	}
	if (!same_ref(&r, &r2))
		die("encode/decode round trip changed the ref");
	return 0;
}
