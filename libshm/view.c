/* view.c - NumPy-style views of array memory (see "views" in shma.h).
 *
 * A view is data + dtype + shape + byte strides.  Every function here is a
 * pure computation that follows what NumPy does for the same operation:
 * slicing (PySlice_AdjustIndices), integer indexing, index expressions,
 * transpose, reshape without copy (_attempt_nocopy_reshape), .view(dtype)
 * (array_descr_set) and the C-contiguity flag (_UpdateContiguousFlags).
 *
 * Each function validates its input lightly (view_check), builds the result
 * in a local view and copies it to *out only on success, so out may alias in
 * and is untouched on error.  Offsets are computed with overflow checks, so a
 * garbage view gives an error, never undefined behaviour.
 */
#include "shma.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dtype.h"

/* A view we can work on: sane rank and item size, every dimension fits in
 * int64_t (so n - 1, start + n, ... never overflow). */
static int view_check(const struct shma_view *v)
{
	unsigned i;

	if (!v || v->ndim > SHMA_MAXDIM || v->itemsize == 0)
		return -EINVAL;
	for (i = 0; i < v->ndim; i++)
		if (v->shape[i] > INT64_MAX)
			return -EINVAL;
	return 0;
}

/* Contiguous strides for shape, C order (last axis fastest) or F order.  As
 * NumPy's _array_fill_strides, a 0 dimension counts as 1 for the axes
 * outside it.  -EINVAL if a stride would not fit in int64_t. */
static int fill_strides(struct shma_view *v, bool fortran)
{
	int64_t sd = v->itemsize;
	unsigned k, i;

	for (k = 0; k < v->ndim; k++) {
		i = fortran ? k : v->ndim - 1 - k;
		v->strides[i] = sd;
		if (v->shape[i] > INT64_MAX)
			return -EINVAL;
		if (v->shape[i] && __builtin_mul_overflow(sd, (int64_t)v->shape[i], &sd))
			return -EINVAL;
	}
	return 0;
}

/* v->data + i * v->strides[axis] into *p; -EINVAL on overflow. */
static int axis_offset(const struct shma_view *v, unsigned axis, int64_t i, char **p)
{
	int64_t off;

	if (__builtin_mul_overflow(i, v->strides[axis], &off))
		return -EINVAL;
	*p = v->data + off;
	return 0;
}

static void drop_axis(struct shma_view *v, unsigned axis)
{
	unsigned n = v->ndim - axis - 1;

	memmove(&v->shape[axis], &v->shape[axis + 1], n * sizeof(v->shape[0]));
	memmove(&v->strides[axis], &v->strides[axis + 1], n * sizeof(v->strides[0]));
	v->ndim--;
}

/* ---- construction ------------------------------------------------------- */

static int view_new(struct shma_view *v, void *data, const char *dtype, unsigned ndim,
		    const uint64_t *shape, bool fortran)
{
	struct dtype dt;
	const char *why;
	int err;

	if (!dtype || ndim > SHMA_MAXDIM || (ndim && !shape))
		return -EINVAL;
	err = dtype_parse(dtype, &dt, &why);
	if (err)
		return err;
	memset(v, 0, sizeof(*v));
	v->data = data;
	v->base = data;
	memcpy(v->dtype, dt.str, sizeof(v->dtype));
	v->itemsize = dt.size;
	v->ndim = ndim;
	if (ndim)
		memcpy(v->shape, shape, ndim * sizeof(shape[0]));
	return fill_strides(v, fortran);
}

int shma_view_init(struct shma_view *out, void *data, const char *dtype, unsigned ndim,
		   const uint64_t *shape)
{
	struct shma_view v;
	int err;

	err = view_new(&v, data, dtype, ndim, shape, false);
	if (err)
		return err;
	*out = v;
	return 0;
}

int shma_view_of(shma_array *a, struct shma_view *out)
{
	struct shma_array_info info;
	struct shma_view v;
	int err;

	if (!a)
		return -EINVAL;
	shma_array_info(a, &info);
	if (info.order != 'C' && info.order != 'F')
		return -EINVAL;
	err = view_new(&v, shma_array_data(a), info.dtype, info.ndim, info.shape,
		       info.order == 'F');
	if (err)
		return err;
	v.array = a;
	*out = v;
	return 0;
}

/* ---- slicing and indexing ----------------------------------------------- */

/* Python's slice.indices() for a sequence of length n (PySlice_Unpack +
 * PySlice_AdjustIndices), with SHMA_END for a missing start or stop.
 * Sets *start and *step (possibly clamped) and returns the element count. */
static int64_t slice_adjust(int64_t n, int64_t *startp, int64_t stop, int64_t *stepp)
{
	int64_t start = *startp, step = *stepp;

	if (step < -INT64_MAX) /* so that -step exists */
		step = -INT64_MAX;
	if (start == SHMA_END)
		start = step < 0 ? INT64_MAX : 0;
	if (stop == SHMA_END)
		stop = step < 0 ? INT64_MIN : INT64_MAX;

	if (start < 0) {
		start += n;
		if (start < 0)
			start = step < 0 ? -1 : 0;
	} else if (start >= n) {
		start = step < 0 ? n - 1 : n;
	}
	if (stop < 0) {
		/* INT64_MIN + n does not overflow: 0 <= n <= INT64_MAX */
		stop += n;
		if (stop < 0)
			stop = step < 0 ? -1 : 0;
	} else if (stop >= n) {
		stop = step < 0 ? n - 1 : n;
	}
	*startp = start;
	*stepp = step;
	if (step < 0)
		return stop < start ? (start - stop - 1) / -step + 1 : 0;
	return start < stop ? (stop - start - 1) / step + 1 : 0;
}

int shma_view_slice(const struct shma_view *in, unsigned axis, int64_t start, int64_t stop,
		    int64_t step, struct shma_view *out)
{
	struct shma_view v;
	int64_t len, stride;
	int err;

	err = view_check(in);
	if (err)
		return err;
	if (axis >= in->ndim || step == 0)
		return -EINVAL;
	v = *in;
	len = slice_adjust((int64_t)in->shape[axis], &start, stop, &step);
	if (len == 0) {
		/* As NumPy (which takes start 0, step 1 for an empty slice):
		 * data and the axis' stride stay as they were. */
		v.shape[axis] = 0;
		*out = v;
		return 0;
	}
	err = axis_offset(in, axis, start, &v.data);
	if (err)
		return err;
	/* Only an axis of one element may step that far; its stride is never
	 * used to address anything, and NumPy wraps it (as this does). */
	if (__builtin_mul_overflow(in->strides[axis], step, &stride) && len > 1)
		return -EINVAL;
	v.shape[axis] = (uint64_t)len;
	v.strides[axis] = stride;
	*out = v;
	return 0;
}

int shma_view_index(const struct shma_view *in, unsigned axis, int64_t i,
		    struct shma_view *out)
{
	struct shma_view v;
	int64_t n;
	int err;

	err = view_check(in);
	if (err)
		return err;
	if (axis >= in->ndim)
		return -EINVAL;
	n = (int64_t)in->shape[axis];
	if (i < 0)
		i += n;
	if (i < 0 || i >= n)
		return -ERANGE;
	v = *in;
	err = axis_offset(in, axis, i, &v.data);
	if (err)
		return err;
	drop_axis(&v, axis);
	*out = v;
	return 0;
}

/* ---- index expressions ---------------------------------------------------
 *
 *   expr  := ws | ws "(" ws ")" ws | item (ws "," ws item)* [ws ","] ws
 *   item  := "..." | int | [int] ws ":" ws [int] [ws ":" ws [int]]
 *   int   := ["+" | "-"] ws digit+
 *
 * Items apply left to right: an integer drops its axis, a slice keeps it,
 * "..." stands for as many full slices as the other items leave; axes left
 * over at the end are taken whole.
 */

enum item_kind { ITEM_INT, ITEM_SLICE, ITEM_ELLIPSIS };

struct item {
	enum item_kind kind;
	size_t pos; /* where it starts in the expression */
	int64_t start, stop, step; /* ITEM_INT: start */
};

struct parser {
	const char *s;
	size_t pos;
	char *why;
	size_t whylen;
};

static void __attribute__((format(printf, 3, 4)))
parse_error(struct parser *p, size_t pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!p->why || !p->whylen)
		return;
	n = snprintf(p->why, p->whylen, "column %zu: ", pos + 1);
	if (n < 0 || (size_t)n >= p->whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->why + n, p->whylen - (size_t)n, fmt, ap);
	va_end(ap);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void skip_space(struct parser *p)
{
	while (is_space(p->s[p->pos]))
		p->pos++;
}

/* Does an integer start here?  As in Python, a sign may be followed by
 * whitespace. */
static bool at_int(const struct parser *p)
{
	const char *s = p->s + p->pos;

	if (*s == '-' || *s == '+')
		for (s++; is_space(*s); s++)
			;
	return is_digit(*s);
}

/* An integer at p->pos (at_int() is true); -EINVAL if it does not fit. */
static int parse_int(struct parser *p, int64_t *out)
{
	size_t pos = p->pos;
	bool neg = false;
	uint64_t mag = 0, lim;
	unsigned d;

	if (p->s[p->pos] == '-' || p->s[p->pos] == '+') {
		neg = p->s[p->pos++] == '-';
		skip_space(p);
	}
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	while (is_digit(p->s[p->pos])) {
		d = (unsigned)(p->s[p->pos++] - '0');
		if (mag > (lim - d) / 10) {
			parse_error(p, pos, "integer does not fit in 64 bits");
			return -EINVAL;
		}
		mag = mag * 10 + d;
	}
	if (!neg)
		*out = (int64_t)mag;
	else
		*out = mag > INT64_MAX ? INT64_MIN : -(int64_t)mag;
	return 0;
}

/* An optional slice bound: SHMA_END if absent.  An explicit INT64_MIN would
 * read as SHMA_END; INT64_MIN + 1 clips the same way. */
static int parse_bound(struct parser *p, int64_t *out)
{
	int err;

	*out = SHMA_END;
	skip_space(p);
	if (!at_int(p))
		return 0;
	err = parse_int(p, out);
	if (!err && *out == INT64_MIN)
		*out = INT64_MIN + 1;
	return err;
}

static int parse_item(struct parser *p, struct item *it)
{
	bool have_int = false;
	int64_t n = 0;
	int err;

	skip_space(p);
	it->pos = p->pos;
	if (!strncmp(p->s + p->pos, "...", 3)) {
		p->pos += 3;
		it->kind = ITEM_ELLIPSIS;
		return 0;
	}
	if (at_int(p)) {
		err = parse_int(p, &n);
		if (err)
			return err;
		have_int = true;
		skip_space(p);
	}
	if (p->s[p->pos] != ':') {
		if (!have_int) {
			parse_error(p, p->pos, "expected an integer, a slice or '...'");
			return -EINVAL;
		}
		it->kind = ITEM_INT;
		it->start = n;
		return 0;
	}

	it->kind = ITEM_SLICE;
	it->start = !have_int ? SHMA_END : n == INT64_MIN ? INT64_MIN + 1 : n;
	it->step = 1;
	p->pos++; /* the first ':' */
	err = parse_bound(p, &it->stop);
	if (err)
		return err;
	skip_space(p);
	if (p->s[p->pos] != ':')
		return 0;
	p->pos++;
	skip_space(p);
	if (at_int(p)) {
		size_t pos = p->pos;

		err = parse_int(p, &it->step);
		if (err)
			return err;
		if (it->step == 0) {
			parse_error(p, pos, "slice step cannot be zero");
			return -EINVAL;
		}
		skip_space(p);
	}
	if (p->s[p->pos] == ':') {
		parse_error(p, p->pos, "a slice has at most two ':'");
		return -EINVAL;
	}
	return 0;
}

/* Is the expression empty or "()" (everything)? */
static bool parse_empty(struct parser *p)
{
	size_t pos = p->pos;

	skip_space(p);
	if (p->s[p->pos] == '(') {
		p->pos++;
		skip_space(p);
		if (p->s[p->pos] != ')') {
			p->pos = pos;
			return false;
		}
		p->pos++;
		skip_space(p);
	}
	if (p->s[p->pos] == '\0')
		return true;
	p->pos = pos;
	return false;
}

/* Apply one item to v; *axis is the next axis of v to index, *orig the same
 * axis of the input view (for messages). */
static int apply_item(struct parser *p, const struct item *it, struct shma_view *v,
		      unsigned *axis, unsigned *orig, unsigned nfill)
{
	int err;

	switch (it->kind) {
	case ITEM_ELLIPSIS:
		*axis += nfill;
		*orig += nfill;
		return 0;
	case ITEM_SLICE:
		err = shma_view_slice(v, *axis, it->start, it->stop, it->step, v);
		if (err) {
			parse_error(p, it->pos, "invalid slice of axis %u", *orig);
			return err;
		}
		(*axis)++;
		(*orig)++;
		return 0;
	case ITEM_INT:
		err = shma_view_index(v, *axis, it->start, v);
		if (err == -ERANGE) {
			parse_error(p, it->pos,
				    "index %" PRId64 " is out of bounds for axis %u with size %" PRIu64,
				    it->start, *orig, v->shape[*axis]);
			return err;
		}
		if (err) {
			parse_error(p, it->pos, "invalid index of axis %u", *orig);
			return err;
		}
		(*orig)++;
		return 0;
	}
	return -EINVAL;
}

int shma_view_subscript(const struct shma_view *in, const char *expr, struct shma_view *out,
			char *why, size_t whylen)
{
	struct parser p = { .s = expr, .why = why, .whylen = whylen };
	struct item items[SHMA_MAXDIM + 1];
	unsigned n = 0, nidx = 0, i, axis = 0, orig = 0;
	bool ellipsis = false;
	struct shma_view v;
	int err;

	if (why && whylen)
		why[0] = '\0';
	err = view_check(in);
	if (err) {
		parse_error(&p, 0, "invalid view");
		return err;
	}
	if (!expr) {
		parse_error(&p, 0, "no expression");
		return -EINVAL;
	}
	if (!parse_empty(&p)) {
		for (;;) {
			struct item it;

			err = parse_item(&p, &it);
			if (err)
				return err;
			if (it.kind == ITEM_ELLIPSIS) {
				if (ellipsis) {
					parse_error(&p, it.pos,
						    "an index can only have a single ellipsis ('...')");
					return -EINVAL;
				}
				ellipsis = true;
			} else if (++nidx > in->ndim) {
				parse_error(&p, it.pos,
					    "too many indices: the view is %u-dimensional",
					    in->ndim);
				return -EINVAL;
			}
			items[n++] = it;
			skip_space(&p);
			if (p.s[p.pos] == '\0')
				break;
			if (p.s[p.pos] != ',') {
				parse_error(&p, p.pos, "expected ',' or the end");
				return -EINVAL;
			}
			p.pos++;
			skip_space(&p);
			if (p.s[p.pos] == '\0') /* a trailing comma, as in (1,) */
				break;
		}
	}

	v = *in;
	for (i = 0; i < n; i++) {
		err = apply_item(&p, &items[i], &v, &axis, &orig, in->ndim - nidx);
		if (err)
			return err;
	}
	*out = v;
	return 0;
}

/* ---- transpose, reshape, astype ----------------------------------------- */

int shma_view_transpose(const struct shma_view *in, const unsigned *perm,
			struct shma_view *out)
{
	bool seen[SHMA_MAXDIM] = { false };
	struct shma_view v;
	unsigned i, j;
	int err;

	err = view_check(in);
	if (err)
		return err;
	v = *in;
	for (i = 0; i < in->ndim; i++) {
		j = perm ? perm[i] : in->ndim - 1 - i;
		if (j >= in->ndim || seen[j])
			return -EINVAL;
		seen[j] = true;
		v.shape[i] = in->shape[j];
		v.strides[i] = in->strides[j];
	}
	*out = v;
	return 0;
}

uint64_t shma_view_size(const struct shma_view *v)
{
	uint64_t n = 1;
	unsigned i;

	if (!v || v->ndim > SHMA_MAXDIM)
		return 0;
	for (i = 0; i < v->ndim; i++)
		if (v->shape[i] == 0)
			return 0;
	for (i = 0; i < v->ndim; i++)
		if (__builtin_mul_overflow(n, v->shape[i], &n))
			return UINT64_MAX;
	return n;
}

/* NumPy's _attempt_nocopy_reshape for C order: walk old and new axes in
 * groups whose sizes have equal products; within a group the old axes must
 * be contiguous with respect to each other, and the new axes get strides
 * that step through the group the same way.  Axes of size 1 are dropped
 * from the old shape and get the stride of what precedes them in the new.
 * Both shapes have the same, non-zero, number of elements. */
static bool nocopy_reshape(const struct shma_view *old, unsigned newnd,
			   const uint64_t *newdims, int64_t *newstrides)
{
	uint64_t olddims[SHMA_MAXDIM];
	int64_t oldstrides[SHMA_MAXDIM], last, prod;
	unsigned oldnd = 0, oi, oj, ni, nj, ok, nk;

	for (oi = 0; oi < old->ndim; oi++) {
		if (old->shape[oi] != 1) {
			olddims[oldnd] = old->shape[oi];
			oldstrides[oldnd] = old->strides[oi];
			oldnd++;
		}
	}

	oi = 0;
	oj = 1;
	ni = 0;
	nj = 1;
	while (ni < newnd && oi < oldnd) {
		uint64_t np = newdims[ni], op = olddims[oi];

		/* the products stay below the total size, so no overflow, and
		 * the groups end before either shape does */
		while (np != op) {
			if (np < op)
				np *= newdims[nj++];
			else
				op *= olddims[oj++];
		}
		for (ok = oi; ok < oj - 1; ok++) {
			if (__builtin_mul_overflow((int64_t)olddims[ok + 1], oldstrides[ok + 1],
						   &prod) ||
			    oldstrides[ok] != prod)
				return false;
		}
		newstrides[nj - 1] = oldstrides[oj - 1];
		for (nk = nj - 1; nk > ni; nk--) {
			if (__builtin_mul_overflow(newstrides[nk], (int64_t)newdims[nk],
						   &newstrides[nk - 1]))
				return false;
		}
		ni = nj++;
		oi = oj++;
	}

	/* trailing 1s of the new shape */
	last = ni >= 1 ? newstrides[ni - 1] : (int64_t)old->itemsize;
	for (nk = ni; nk < newnd; nk++)
		newstrides[nk] = last;
	return true;
}

int shma_view_reshape(const struct shma_view *in, unsigned ndim, const uint64_t *shape,
		      struct shma_view *out)
{
	uint64_t dims[SHMA_MAXDIM], known = 1, size;
	int64_t strides[SHMA_MAXDIM];
	unsigned i, infer = SHMA_MAXDIM;
	struct shma_view v;
	int err;

	err = view_check(in);
	if (err)
		return err;
	if (ndim > SHMA_MAXDIM || (ndim && !shape))
		return -EINVAL;
	if (ndim)
		memcpy(dims, shape, ndim * sizeof(dims[0]));

	/* Same shape: the view as it is (NumPy keeps even the strides of
	 * size-1 axes then). */
	if (ndim == in->ndim && (!ndim || !memcmp(dims, in->shape, ndim * sizeof(dims[0])))) {
		*out = *in;
		return 0;
	}

	/* _fix_unknown_dimension */
	size = shma_view_size(in);
	for (i = 0; i < ndim; i++) {
		if (dims[i] == SHMA_INFER) {
			if (infer != SHMA_MAXDIM)
				return -EINVAL;
			infer = i;
		} else if (dims[i] > INT64_MAX || __builtin_mul_overflow(known, dims[i], &known)) {
			return -EINVAL;
		}
	}
	if (infer != SHMA_MAXDIM) {
		if (known == 0 || size % known)
			return -EINVAL;
		dims[infer] = size / known;
	} else if (known != size) {
		return -EINVAL;
	}

	v = *in;
	v.ndim = ndim;
	memcpy(v.shape, dims, ndim * sizeof(dims[0]));
	if (shma_view_is_contiguous(in)) {
		err = fill_strides(&v, false);
		if (err)
			return err;
	} else {
		if (!nocopy_reshape(in, ndim, dims, strides))
			return -ENOTSUP;
		memcpy(v.strides, strides, ndim * sizeof(strides[0]));
	}
	*out = v;
	return 0;
}

int shma_view_astype(const struct shma_view *in, const char *dtype, struct shma_view *out)
{
	struct shma_view v;
	struct dtype dt;
	const char *why;
	unsigned last;
	uint64_t bytes;
	int err;

	err = view_check(in);
	if (err)
		return err;
	if (!dtype)
		return -EINVAL;
	err = dtype_parse(dtype, &dt, &why);
	if (err)
		return err;
	v = *in;
	memcpy(v.dtype, dt.str, sizeof(v.dtype));
	v.itemsize = dt.size;
	if (dt.size != in->itemsize) {
		/* as array_descr_set: the size changes along the last axis */
		if (in->ndim == 0)
			return -EINVAL;
		last = in->ndim - 1;
		if (in->shape[last] != 1 && shma_view_size(in) != 0 &&
		    in->strides[last] != (int64_t)in->itemsize)
			return -ENOTSUP;
		if (__builtin_mul_overflow(in->shape[last], (uint64_t)in->itemsize, &bytes) ||
		    bytes % dt.size || bytes / dt.size > INT64_MAX)
			return -EINVAL;
		v.shape[last] = bytes / dt.size;
		v.strides[last] = dt.size;
	}
	*out = v;
	return 0;
}

/* ---- queries ------------------------------------------------------------- */

void *shma_view_ptr(const struct shma_view *v, const uint64_t *idx)
{
	int64_t off = 0, o;
	unsigned i;

	if (view_check(v) || (v->ndim && !idx))
		return NULL;
	for (i = 0; i < v->ndim; i++) {
		if (idx[i] >= v->shape[i])
			return NULL;
		if (__builtin_mul_overflow((int64_t)idx[i], v->strides[i], &o) ||
		    __builtin_add_overflow(off, o, &off))
			return NULL;
	}
	return v->data + off;
}

void shma_view_extent(const struct shma_view *v, uint64_t *lo, uint64_t *hi)
{
	int64_t start, end, span;
	unsigned i;

	if (view_check(v))
		goto overflow;
	start = (int64_t)((uintptr_t)v->data - (uintptr_t)v->base);
	if (shma_view_size(v) == 0) {
		*lo = *hi = start < 0 ? 0 : (uint64_t)start;
		return;
	}
	end = start;
	for (i = 0; i < v->ndim; i++) {
		if (__builtin_mul_overflow((int64_t)(v->shape[i] - 1), v->strides[i], &span))
			goto overflow;
		if (span < 0 && __builtin_add_overflow(start, span, &start))
			goto overflow;
		if (span > 0 && __builtin_add_overflow(end, span, &end))
			goto overflow;
	}
	if (__builtin_add_overflow(end, (int64_t)v->itemsize, &end) || start < 0)
		goto overflow;
	*lo = (uint64_t)start;
	*hi = (uint64_t)end;
	return;

overflow:
	/* not a view these functions make: claim everything */
	*lo = 0;
	*hi = UINT64_MAX;
}

bool shma_view_is_contiguous(const struct shma_view *v)
{
	int64_t sd;
	unsigned i;

	if (view_check(v))
		return false;
	if (shma_view_size(v) == 0)
		return true;
	sd = v->itemsize;
	for (i = v->ndim; i-- > 0;) {
		if (v->shape[i] == 1)
			continue;
		if (v->strides[i] != sd)
			return false;
		if (__builtin_mul_overflow(sd, (int64_t)v->shape[i], &sd))
			return false;
	}
	return true;
}
