/* fuzz_npy.c - libFuzzer harness for the .npy header reader (worker/npy.c).
 *
 * An input that starts with the .npy magic is a whole file: it is parsed
 * from memory (npy_parse_preamble + npy_parse_dict) and read through a memfd
 * (npy_read_header + npy_check_size), and both must agree.  Any other input
 * is a header dict alone, given to npy_parse_dict.  A header that parses must
 * format (npy_format_header) and parse back to the same header.
 */
#include "npy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_npy: %s\n", what);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	memfd = memfd_create("fuzz-npy", MFD_CLOEXEC);
	if (memfd < 0)
		die("memfd_create failed");
	return 0;
}

static bool same_dict(const struct npy_header *a, const struct npy_header *b)
{
	if (strcmp(a->descr, b->descr) || a->itemsize != b->itemsize ||
	    a->fortran_order != b->fortran_order || a->ndim != b->ndim ||
	    a->nbytes != b->nbytes)
		return false;
	for (unsigned i = 0; i < a->ndim && i < NPY_MAXDIM; i++)
		if (a->shape[i] != b->shape[i])
			return false;
	return true;
}

/* A parsed header formats and parses back to itself. */
static void round_trip(const struct npy_header *h)
{
	static char buf[4096];
	struct npy_header h2;
	struct npy_error e;
	size_t len, hlen = 0;

	if (h->ndim > NPY_MAXDIM)
		die("ndim > NPY_MAXDIM");
	if (npy_format_header(h->descr, h->fortran_order, h->ndim, h->shape, 0, buf, sizeof(buf),
			      &len))
		die("a parsed header does not format");
	memset(&h2, 0, sizeof(h2));
	if (npy_parse_preamble((const unsigned char *)buf, len, &h2, &hlen, &e))
		die("a formatted preamble does not parse");
	if (npy_parse_dict(buf + len - hlen, hlen, len - hlen, &h2, &e)) {
		fprintf(stderr, "fuzz_npy: %s\n", e.text);
		die("a formatted dict does not parse");
	}
	if (!same_dict(h, &h2))
		die("format/parse round trip changed the header");
}

static void check_error(const struct npy_error *e, size_t size)
{
	if (e->fault == NPY_OK || !memchr(e->text, 0, sizeof(e->text)))
		die("a refusal without a fault or with an unterminated text");
}

static void whole_file(const uint8_t *data, size_t size)
{
	struct npy_header hm, hf;
	struct npy_error em, ef;
	size_t hlen = 0, need;
	int errm, errf;

	/* from memory */
	memset(&hm, 0, sizeof(hm));
	errm = npy_parse_preamble(data, size, &hm, &hlen, &em);
	if (!errm) {
		need = hm.major == 1 ? 10 : 12;
		if (size - need < hlen) {
			errm = -EINVAL;
			em.fault = NPY_TRUNCATED;
		} else {
			errm = npy_parse_dict((const char *)data + need, hlen, need, &hm, &em);
		}
	}
	/* through a file descriptor */
	if (ftruncate(memfd, 0) || pwrite(memfd, data, size, 0) != (ssize_t)size ||
	    lseek(memfd, 0, SEEK_SET) != 0)
		die("cannot fill the memfd");
	errf = npy_read_header(memfd, &hf, &ef);
	if (!errm != !errf || (errm && em.fault != ef.fault))
		die("npy_read_header and the in-memory parse disagree");
	if (errf) {
		check_error(&ef, size);
		return;
	}
	if (hf.data_offset != (hf.major == 1 ? 10 : 12) + hlen ||
	    lseek(memfd, 0, SEEK_CUR) != (off_t)hf.data_offset)
		die("the fd is not positioned at data_offset");
	if (npy_check_size(&hf, size, &ef))
		check_error(&ef, size);
	round_trip(&hf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct npy_header h;
	struct npy_error e;

	if (size >= NPY_MAGIC_LEN && !memcmp(data, NPY_MAGIC, NPY_MAGIC_LEN)) {
		whole_file(data, size);
		return 0;
	}
	memset(&h, 0, sizeof(h));
	if (npy_parse_dict((const char *)data, size, 0, &h, &e)) {
		check_error(&e, size);
		return 0;
	}
	round_trip(&h);
	return 0;
}
