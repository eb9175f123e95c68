/* npy.h - the NumPy .npy file format: a strict, bounded reader of its header
 * and a writer (internal to worker/; used by the `shma` tool).
 *
 * A .npy file is
 *
 *   "\x93NUMPY"  major  minor  HLEN  HEADER  DATA
 *
 * where HLEN is 2 bytes little-endian (version 1.0) or 4 bytes (2.0 and 3.0),
 * HEADER is HLEN bytes of a Python dict literal (latin-1; UTF-8 in 3.0)
 *
 *   {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
 *
 * padded with spaces and ended by '\n' so that DATA starts aligned (64 bytes
 * by today's NumPy, 16 by older ones), and DATA is the items, C or Fortran
 * order, itemsize x product(shape) bytes.
 *
 * The reader accepts exactly the three keys (any order, single or double
 * quotes, a trailing comma, Python 2's "3L" sizes), the type strings shma
 * supports (libshm/dtype.h), at most NPY_MAXDIM sizes and at most
 * NPY_MAX_NBYTES bytes of data; anything else is refused with an npy_error
 * that says what is wrong and where.  It never allocates more than the
 * header's bounded length.
 */
#ifndef SHMA_NPY_H
#define SHMA_NPY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_MAXDIM 32
/* The longest header accepted (version 1.0 cannot exceed 65535 anyway).
 * NumPy writes a few hundred bytes for the dtypes shma supports. */
#define NPY_HEADER_MAX ((size_t)1 << 20)
/* The most data bytes accepted (the broker's limit on an array's size). */
#define NPY_MAX_NBYTES ((uint64_t)1 << 60)
/* Data alignment of the files written (NumPy's since 1.14). */
#define NPY_ALIGN 64

/* What is wrong with a file. */
enum npy_fault {
	NPY_OK = 0,
	NPY_IO,		    /* the file could not be read or written (errno) */
	NPY_BAD_MAGIC,	    /* not a .npy file */
	NPY_BAD_VERSION,    /* a format version other than 1.0, 2.0, 3.0 */
	NPY_HEADER_TOO_LONG, /* header length over NPY_HEADER_MAX */
	NPY_BAD_HEADER,	    /* the header is not the dict literal described above */
	NPY_BAD_KEYS,	    /* a key missing, repeated or unknown */
	NPY_BAD_DTYPE,	    /* a type string shma does not support */
	NPY_BAD_SHAPE,	    /* negative or huge sizes, too many dimensions */
	NPY_TRUNCATED,	    /* the file ends before its header or data does */
};

/* A structured error: what, where (byte offset in the file), and why in
 * words a person can act on. */
struct npy_error {
	enum npy_fault fault;
	uint64_t offset; /* in the file */
	char text[200];
};

/* A parsed header. */
struct npy_header {
	unsigned major, minor;	/* format version: 1.0, 2.0 or 3.0 */
	char descr[5];		/* the type string, normalised ("<f8", "|u1") */
	unsigned itemsize;
	bool fortran_order;
	unsigned ndim;
	uint64_t shape[NPY_MAXDIM];
	uint64_t nbytes;	/* itemsize x product(shape), <= NPY_MAX_NBYTES */
	uint64_t data_offset;	/* where DATA starts: 10 or 12 + HLEN */
};

/* A short name of a fault ("bad magic", "truncated", ...). */
const char *npy_fault_name(enum npy_fault f);

/* Parse the preamble (magic, version, header length) from the first len
 * bytes of a file (len >= 8 for 1.0, >= 12 for 2.0/3.0).  Fills h->major,
 * h->minor and *hlen.  0, or -EINVAL with e filled (NPY_TRUNCATED when len is
 * too short, so a caller can read more; NPY_BAD_MAGIC, NPY_BAD_VERSION,
 * NPY_HEADER_TOO_LONG). */
int npy_parse_preamble(const unsigned char *buf, size_t len, struct npy_header *h, size_t *hlen,
		       struct npy_error *e);

/* Parse the header dict: text[0, len), which starts at file offset `at`
 * (for error offsets).  Fills every field of h but major, minor and
 * data_offset.  0 or -EINVAL with e filled (NPY_BAD_HEADER, NPY_BAD_KEYS,
 * NPY_BAD_DTYPE, NPY_BAD_SHAPE); h may be partly filled then. */
int npy_parse_dict(const char *text, size_t len, uint64_t at, struct npy_header *h,
		   struct npy_error *e);

/* Read and parse a whole header from fd's current position (read(), so
 * pipes work); afterwards fd is positioned at the data.  0, -EINVAL with e
 * filled for a malformed file (NPY_TRUNCATED if it ends inside the header),
 * or -errno (NPY_IO). */
int npy_read_header(int fd, struct npy_header *h, struct npy_error *e);

/* Check that a file of size file_size holds all the data h promises:
 * 0 or -EINVAL with e filled (NPY_TRUNCATED, saying how much is missing). */
int npy_check_size(const struct npy_header *h, uint64_t file_size, struct npy_error *e);

/* Format a header for dtype/shape/order: preamble + dict + padding to
 * NPY_ALIGN.  major: 1, 2 or 3, or 0 for the oldest version that can hold
 * it (1.0 unless the header exceeds 65535 bytes).  Writes at most cap bytes
 * to buf and the length to *len.  0, -EINVAL (bad dtype, ndim, version, or
 * a header too long for version 1.0), -ENOSPC (cap too small; 4096 is
 * always enough). */
int npy_format_header(const char *descr, bool fortran_order, unsigned ndim,
		      const uint64_t *shape, unsigned major, char *buf, size_t cap, size_t *len);

/* read(2) until len bytes, the end of the file or an error: the count read,
 * or -errno (EINTR retried). */
ssize_t npy_read_full(int fd, void *buf, size_t len);

#endif
