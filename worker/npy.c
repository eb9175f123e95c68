/* npy.c - the NumPy .npy header: a strict, bounded reader and a writer
 * (the format and the rules are in npy.h).
 *
 * The header dict is parsed by hand, not by a general Python-literal parser:
 * each of the three keys has its own expected value, so an error can say
 * which key is wrong and how, and nothing the file says can make the parser
 * recurse or allocate.
 */
#include "npy.h"

#include "dtype.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_MAX 64   /* longest key or string value worth reading */

const char *npy_fault_name(enum npy_fault f)
{
	switch (f) {
	case NPY_OK:
		return "ok";
	case NPY_IO:
		return "I/O error";
	case NPY_BAD_MAGIC:
		return "not a .npy file";
	case NPY_BAD_VERSION:
		return "unsupported format version";
	case NPY_HEADER_TOO_LONG:
		return "header too long";
	case NPY_BAD_HEADER:
		return "bad header";
	case NPY_BAD_KEYS:
		return "bad header keys";
	case NPY_BAD_DTYPE:
		return "unsupported dtype";
	case NPY_BAD_SHAPE:
		return "bad shape";
	case NPY_TRUNCATED:
		return "truncated";
	}
	return "unknown";
}

static int fail(struct npy_error *e, enum npy_fault f, uint64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct npy_error *e, enum npy_fault f, uint64_t offset, const char *fmt, ...)
{
	va_list ap;

	e->fault = f;
	e->offset = offset;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	return f == NPY_IO ? -EIO : -EINVAL;
}

/* ---- preamble ------------------------------------------------------------ */

int npy_parse_preamble(const unsigned char *buf, size_t len, struct npy_header *h, size_t *hlen,
		       struct npy_error *e)
{
	size_t need, n;

	memset(e, 0, sizeof(*e));
	n = len < NPY_MAGIC_LEN ? len : NPY_MAGIC_LEN;
	if (memcmp(buf, NPY_MAGIC, n))
		return fail(e, NPY_BAD_MAGIC, 0, "it does not start with \"\\x93NUMPY\"");
	if (len < 8)
		return fail(e, NPY_TRUNCATED, len, "the file ends inside its preamble (%zu bytes)",
			    len);
	h->major = buf[6];
	h->minor = buf[7];
	if (h->major < 1 || h->major > 3 || h->minor != 0)
		return fail(e, NPY_BAD_VERSION, 6, "%u.%u (shma reads 1.0, 2.0 and 3.0)",
			    h->major, h->minor);
	need = h->major == 1 ? 10 : 12;
	if (len < need)
		return fail(e, NPY_TRUNCATED, len, "the file ends inside its preamble (%zu bytes)",
			    len);
	if (h->major == 1)
		*hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
	else
		*hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
			(size_t)buf[11] << 24;
	if (*hlen > NPY_HEADER_MAX)
		return fail(e, NPY_HEADER_TOO_LONG, 8, "%zu bytes (at most %zu "
			    "accepted)", *hlen, NPY_HEADER_MAX);
	if (*hlen == 0)
		return fail(e, NPY_BAD_HEADER, 8, "the header is empty");
	h->data_offset = need + *hlen;
	return 0;
}

/* ---- the header dict ----------------------------------------------------- */

struct cursor {
	const char *s;
	size_t len, i;
	uint64_t at; /* file offset of s[0] */
	struct npy_error *e;
};

static uint64_t where(const struct cursor *c)
{
	return c->at + c->i;
}

static void skip_ws(struct cursor *c)
{
	while (c->i < c->len && c->s[c->i] && strchr(" \t\r\n\f", c->s[c->i]))
		c->i++;
}

static int peek(const struct cursor *c)
{
	return c->i < c->len ? (unsigned char)c->s[c->i] : -1;
}

/* What the cursor is looking at, for messages. */
static const char *seen(const struct cursor *c, char *buf, size_t len)
{
	int ch = peek(c);

	if (ch < 0)
		snprintf(buf, len, "the end of the header");
	else if (ch >= 0x20 && ch < 0x7f)
		snprintf(buf, len, "'%c'", ch);
	else
		snprintf(buf, len, "byte 0x%02x", (unsigned)ch);
	return buf;
}

static int expect(struct cursor *c, char ch, const char *what)
{
	char buf[40];

	skip_ws(c);
	if (peek(c) != (unsigned char)ch)
		return fail(c->e, NPY_BAD_HEADER, where(c), "expected '%c' %s, found %s", ch, what,
			    seen(c, buf, sizeof(buf)));
	c->i++;
	return 0;
}

/* A quoted string without escapes, up to KEY_MAX bytes. */
static int parse_string(struct cursor *c, char *out, const char *what)
{
	char q, buf[40];
	size_t start, n;

	skip_ws(c);
	if (peek(c) != '\'' && peek(c) != '"')
		return fail(c->e, NPY_BAD_HEADER, where(c), "expected a quoted string %s, found %s",
			    what, seen(c, buf, sizeof(buf)));
	q = c->s[c->i++];
	start = c->i;
	while (c->i < c->len && c->s[c->i] != q) {
		if (c->s[c->i] == '\\' || c->s[c->i] == '\n' || c->s[c->i] == '\0')
			return fail(c->e, NPY_BAD_HEADER, where(c), "unexpected %s in a string %s",
				    c->s[c->i] == '\\' ? "escape" : "line end or NUL", what);
		c->i++;
	}
	if (c->i >= c->len)
		return fail(c->e, NPY_BAD_HEADER, c->at + start - 1, "unterminated string %s", what);
	n = c->i - start;
	if (n > KEY_MAX)
		return fail(c->e, NPY_BAD_HEADER, c->at + start, "string %s is too long (%zu bytes)",
			    what, n);
	memcpy(out, c->s + start, n);
	out[n] = 0;
	c->i++;
	return 0;
}

/* Why a type string is not one shma supports, in words. */
static const char *dtype_kind_words(const char *s)
{
	const char *k = s + (s[0] && strchr("<>|=", s[0]) ? 1 : 0);

	switch (k[0]) {
	case 'U':
		return "Unicode strings";
	case 'S':
	case 'a':
		return "byte strings";
	case 'V':
		return "raw (void) data";
	case 'O':
		return "Python objects";
	case 'M':
		return "datetimes";
	case 'm':
		return "timedeltas";
	case 'f':
		return "floats of this size (long double?)";
	case 'c':
		return "complex numbers of this size (long double?)";
	case 'b':
	case 'i':
	case 'u':
		return "integers or booleans of this size";
	default:
		return "an unknown type";
	}
}

static int parse_descr(struct cursor *c, struct npy_header *h)
{
	char s[KEY_MAX + 1];
	uint64_t at;
	struct dtype dt;
	const char *why;
	int err;

	skip_ws(c);
	at = where(c);
	if (peek(c) == '[' || peek(c) == '{')
		return fail(c->e, NPY_BAD_DTYPE, at, "structured dtypes (a list of fields) are "
			    "not supported; shma supports |b1, i1-i8, u1-u8, f2, "
			    "f4, f8, c8, c16");
	err = parse_string(c, s, "for 'descr'");
	if (err)
		return err;
	if (dtype_parse(s, &dt, &why))
		return fail(c->e, NPY_BAD_DTYPE, at, "'%s' (%s); shma supports "
			    "|b1, i1-i8, u1-u8, f2, f4, f8, c8, c16", s, dtype_kind_words(s));
	memcpy(h->descr, dt.str, sizeof(h->descr));
	h->itemsize = dt.size;
	return 0;
}

static int parse_bool(struct cursor *c, bool *out, const char *what)
{
	char buf[40];

	skip_ws(c);
	if (c->len - c->i >= 4 && !memcmp(c->s + c->i, "True", 4)) {
		c->i += 4;
		*out = true;
	} else if (c->len - c->i >= 5 && !memcmp(c->s + c->i, "False", 5)) {
		c->i += 5;
		*out = false;
	} else {
		return fail(c->e, NPY_BAD_HEADER, where(c), "expected True or False %s, found %s",
			    what, seen(c, buf, sizeof(buf)));
	}
	/* not the start of a longer word ("Trueish") */
	if (peek(c) >= 0 && (isalnum(peek(c)) || peek(c) == '_'))
		return fail(c->e, NPY_BAD_HEADER, where(c), "expected True or False %s", what);
	return 0;
}

/* One size of 'shape': decimal digits, optionally Python 2's L suffix. */
static int parse_size(struct cursor *c, uint64_t *out)
{
	uint64_t v = 0, at = where(c);
	char buf[40];

	if (peek(c) == '-') {
		size_t j = c->i + 1;

		while (j < c->len && c->s[j] >= '0' && c->s[j] <= '9')
			j++;
		return fail(c->e, NPY_BAD_SHAPE, at, "negative size %.*s in 'shape'",
			    (int)(j - c->i > 24 ? 24 : j - c->i), c->s + c->i);
	}
	if (peek(c) < '0' || peek(c) > '9')
		return fail(c->e, NPY_BAD_HEADER, at, "expected a size in 'shape', found %s",
			    seen(c, buf, sizeof(buf)));
	while (peek(c) >= '0' && peek(c) <= '9') {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(c->s[c->i] - '0'), &v))
			return fail(c->e, NPY_BAD_SHAPE, at, "size too large in 'shape'");
		c->i++;
	}
	if (peek(c) == 'L' || peek(c) == 'l')
		c->i++;
	*out = v;
	return 0;
}

/* A tuple of sizes: (), (3,), (3, 4), (3, 4,). */
static int parse_shape(struct cursor *c, struct npy_header *h)
{
	unsigned n = 0;
	char buf[40];
	uint64_t at;
	int err;

	skip_ws(c);
	at = where(c);
	if (peek(c) != '(')
		return fail(c->e, peek(c) == '[' ? NPY_BAD_SHAPE : NPY_BAD_HEADER, at,
			    "'shape' must be a tuple of sizes, found %s", seen(c, buf, sizeof(buf)));
	c->i++;
	for (;;) {
		skip_ws(c);
		if (peek(c) == ')')
			break;
		if (n == NPY_MAXDIM)
			return fail(c->e, NPY_BAD_SHAPE, where(c), "more than %d dimensions in "
				    "'shape'", NPY_MAXDIM);
		err = parse_size(c, &h->shape[n]);
		if (err)
			return err;
		n++;
		skip_ws(c);
		if (peek(c) == ',') {
			c->i++;
			continue;
		}
		if (peek(c) == ')') {
			if (n == 1) /* (3) is an integer in Python, not a tuple */
				return fail(c->e, NPY_BAD_SHAPE, at, "'shape' is an integer in "
					    "parentheses, not a tuple (write (N,))");
			break;
		}
		return fail(c->e, NPY_BAD_HEADER, where(c), "expected ',' or ')' in 'shape', "
			    "found %s", seen(c, buf, sizeof(buf)));
	}
	c->i++;
	h->ndim = n;
	return 0;
}

int npy_parse_dict(const char *text, size_t len, uint64_t at, struct npy_header *h,
		   struct npy_error *e)
{
	static const char *const keys[3] = { "descr", "fortran_order", "shape" };
	struct cursor c = { .s = text, .len = len, .at = at, .e = e };
	bool have[3] = { false, false, false };
	char key[KEY_MAX + 1], buf[40];
	uint64_t key_at, nbytes;
	int err;

	memset(e, 0, sizeof(*e));
	err = expect(&c, '{', "at the start of the header");
	if (err)
		return err;
	for (;;) {
		int k;

		skip_ws(&c);
		if (peek(&c) == '}')
			break;
		key_at = where(&c);
		err = parse_string(&c, key, "as a key");
		if (err)
			return err;
		for (k = 0; k < 3 && strcmp(key, keys[k]); k++)
			;
		if (k == 3)
			return fail(e, NPY_BAD_KEYS, key_at, "unexpected key '%s' (a .npy header has "
				    "exactly 'descr', 'fortran_order' and 'shape')", key);
		if (have[k])
			return fail(e, NPY_BAD_KEYS, key_at, "key '%s' appears twice", key);
		have[k] = true;
		err = expect(&c, ':', "after a key");
		if (err)
			return err;
		switch (k) {
		case 0:
			err = parse_descr(&c, h);
			break;
		case 1:
			err = parse_bool(&c, &h->fortran_order, "for 'fortran_order'");
			break;
		default:
			err = parse_shape(&c, h);
			break;
		}
		if (err)
			return err;
		skip_ws(&c);
		if (peek(&c) == ',') {
			c.i++;
			continue;
		}
		if (peek(&c) != '}')
			return fail(e, NPY_BAD_HEADER, where(&c), "expected ',' or '}' after the value "
				    "of '%s', found %s", key, seen(&c, buf, sizeof(buf)));
	}
	c.i++; /* '}' */
	skip_ws(&c);
	if (c.i < c.len)
		return fail(e, NPY_BAD_HEADER, where(&c), "unexpected %s after the header's "
			    "dictionary", seen(&c, buf, sizeof(buf)));
	for (int k = 0; k < 3; k++)
		if (!have[k])
			return fail(e, NPY_BAD_KEYS, at, "the header has no '%s'", keys[k]);
	nbytes = h->itemsize;
	for (unsigned i = 0; i < h->ndim; i++)
		if (__builtin_mul_overflow(nbytes, h->shape[i], &nbytes) || nbytes > NPY_MAX_NBYTES)
			return fail(e, NPY_BAD_SHAPE, at, "the array is too large (more than 2^60 "
				    "bytes)");
	h->nbytes = nbytes;
	return 0;
}

/* ---- reading a file ------------------------------------------------------ */

/* Read up to len bytes; the count read (short only at end of file). */
ssize_t npy_read_full(int fd, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = read(fd, (char *)buf + done, len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

int npy_read_header(int fd, struct npy_header *h, struct npy_error *e)
{
	unsigned char pre[12];
	size_t hlen = 0, need;
	ssize_t n;
	char *text;
	int err;

	memset(h, 0, sizeof(*h));
	n = npy_read_full(fd, pre, 8);
	if (n < 0) {
		fail(e, NPY_IO, 0, "cannot read: %s", strerror((int)-n));
		return (int)n;
	}
	err = npy_parse_preamble(pre, (size_t)n, h, &hlen, e);
	if (err && (e->fault != NPY_TRUNCATED || n < 8))
		return err;
	need = h->major == 1 ? 10 : 12;
	n = npy_read_full(fd, pre + 8, need - 8);
	if (n < 0) {
		fail(e, NPY_IO, 8, "cannot read: %s", strerror((int)-n));
		return (int)n;
	}
	err = npy_parse_preamble(pre, 8 + (size_t)n, h, &hlen, e);
	if (err)
		return err;
	text = malloc(hlen);
	if (!text) {
		fail(e, NPY_IO, need, "out of memory");
		return -ENOMEM;
	}
	n = npy_read_full(fd, text, hlen);
	if (n < 0) {
		fail(e, NPY_IO, need, "cannot read: %s", strerror((int)-n));
		err = (int)n;
	} else if ((size_t)n < hlen) {
		err = fail(e, NPY_TRUNCATED, need + (size_t)n, "the file ends inside its header "
			   "(%zd of %zu bytes)", n, hlen);
	} else {
		err = npy_parse_dict(text, hlen, need, h, e);
	}
	free(text);
	return err;
}

int npy_check_size(const struct npy_header *h, uint64_t file_size, struct npy_error *e)
{
	memset(e, 0, sizeof(*e));
	if (file_size < h->data_offset || file_size - h->data_offset < h->nbytes)
		return fail(e, NPY_TRUNCATED, file_size, "the header promises %" PRIu64 " bytes of "
			    "data, the file holds %" PRIu64, h->nbytes,
			    file_size > h->data_offset ? file_size - h->data_offset : 0);
	return 0;
}

/* ---- writing ------------------------------------------------------------- */

int npy_format_header(const char *descr, bool fortran_order, unsigned ndim,
		      const uint64_t *shape, unsigned major, char *buf, size_t cap, size_t *len)
{
	char dict[64 + NPY_MAXDIM * 22];
	size_t n, pre, total, hlen;
	struct dtype dt;
	const char *why;

	if (!descr || dtype_parse(descr, &dt, &why) || ndim > NPY_MAXDIM || major > 3)
		return -EINVAL;
	n = (size_t)snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': %s, 'shape': (",
			     dt.str, fortran_order ? "True" : "False");
	for (unsigned i = 0; i < ndim; i++)
		n += (size_t)snprintf(dict + n, sizeof(dict) - n, "%s%" PRIu64, i ? ", " : "",
				      shape[i]);
	n += (size_t)snprintf(dict + n, sizeof(dict) - n, "%s), }", ndim == 1 ? "," : "");
	if (major == 0)
		major = n + 1 + 10 + NPY_ALIGN <= 65535 ? 1 : 2;
	pre = major == 1 ? 10 : 12;
	total = (pre + n + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
	hlen = total - pre;
	if (major == 1 && hlen > 65535)
		return -EINVAL;
	if (total > cap)
		return -ENOSPC;
	memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
	buf[6] = (char)major;
	buf[7] = 0;
	buf[8] = (char)(hlen & 0xff);
	buf[9] = (char)(hlen >> 8 & 0xff);
	if (major > 1) {
		buf[10] = (char)(hlen >> 16 & 0xff);
		buf[11] = (char)(hlen >> 24 & 0xff);
	}
	memcpy(buf + pre, dict, n);
	memset(buf + pre + n, ' ', hlen - n - 1);
	buf[total - 1] = '\n';
	*len = total;
	return 0;
}
