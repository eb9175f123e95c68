/* aref.c - ArrayRefs: make, encode, decode (checking everything), open,
 * and send/receive over ZeroMQ (the contract is in shma.h; the JSON form in
 * docs/PROTOCOL.md).
 *
 * Opening a ref goes through a connection of this process to the ref's
 * broker, made on first use and reused (one per socket path); the ref's
 * revision is pinned by that connection from the open until shma_close.
 */
#include "conn_int.h"
#include "dtype.h"
#include "names.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define REF_VERSION 1
#define REF_TYPE_FRAME "shma.ref/1"
#define REF_MAX_JSON 16384 /* far above any valid ref */
#define REF_LIMIT (UINT64_C(1) << 60)

/* ---- make ---------------------------------------------------------------- */

int shma_ref_make(const struct shma_view *v, struct shma_ref *out)
{
	struct shma_array *a = v->array;
	struct shma_conn *c;
	struct shma_ref r;
	uint64_t lo, hi, ndirty;
	int err;

	if (!a)
		return -EINVAL; /* not a view of an array */
	c = a->conn;
	err = conn_enter(c);
	if (err)
		return err;
	if (v->ndim > SHMA_MAXDIM || v->base != (char *)(uintptr_t)((uintptr_t)shma_mapping_addr(
							   a->map) - a->first * a->blksize))
		return conn_leave(c, conn_error(c, -EINVAL, "the view does not belong to its array's "
						"current memory"));
	if (a->deleted)
		return conn_leave(c, conn_error(c, -ENOENT, "array \"%s\" was deleted", a->name));
	shma_view_extent(v, &lo, &hi);
	if (hi > a->nbytes)
		return conn_leave(c, conn_error(c, -EINVAL, "the view reaches beyond the committed "
						"end of \"%s\"", a->name));
	if (a->resized)
		return conn_leave(c, conn_error(c, SHMA_EUNCOMMITTED, "the shape of \"%s\" changes "
						"in this transaction: commit first", a->name));
	/* only committed data: no dirty block may meet [lo, hi) */
	ndirty = shma_fileh_dirty_blocks(a->fh, NULL, 0);
	if (ndirty && hi > lo) {
		uint64_t *blks = malloc(ndirty * sizeof(*blks));

		if (!blks)
			return conn_leave(c, -ENOMEM);
		ndirty = shma_fileh_dirty_blocks(a->fh, blks, ndirty);
		for (uint64_t i = 0; i < ndirty; i++)
			if (blks[i] >= lo / a->blksize && blks[i] <= (hi - 1) / a->blksize) {
				err = conn_error(c, SHMA_EUNCOMMITTED, "block %" PRIu64 " of \"%s\" has "
						 "uncommitted changes: commit first", blks[i], a->name);
				break;
			}
		free(blks);
		if (err)
			return conn_leave(c, err);
	}
	memset(&r, 0, sizeof(r));
	snprintf(r.store, sizeof(r.store), "%s", c->store);
	if (strlen(c->path) >= sizeof(r.socket))
		return conn_leave(c, conn_error(c, -ENAMETOOLONG, "socket path too long"));
	snprintf(r.socket, sizeof(r.socket), "%s", c->path);
	snprintf(r.array, sizeof(r.array), "%s", a->name);
	r.revision = a->is_ref ? a->ref_rev : c->snap;
	memcpy(r.dtype, v->dtype, sizeof(r.dtype));
	r.ndim = v->ndim;
	memcpy(r.shape, v->shape, v->ndim * sizeof(*r.shape));
	memcpy(r.strides, v->strides, v->ndim * sizeof(*r.strides));
	r.offset = (uint64_t)(v->data - v->base);
	r.lo = lo;
	r.hi = hi;
	*out = r;
	return conn_leave(c, 0);
}

/* ---- encode / decode ----------------------------------------------------- */

int shma_ref_encode(const struct shma_ref *r, char **json, size_t *len)
{
	json_t *shape = json_array(), *strides = json_array(), *o;
	char *text;

	for (unsigned i = 0; i < r->ndim && i < SHMA_MAXDIM; i++) {
		json_array_append_new(shape, json_integer((json_int_t)r->shape[i]));
		json_array_append_new(strides, json_integer((json_int_t)r->strides[i]));
	}
	o = json_pack("{s:i,s:s,s:s,s:s,s:I,s:s,s:o,s:o,s:I,s:[I,I]}", "shma_ref", REF_VERSION,
		      "store", r->store, "socket", r->socket, "array", r->array, "revision",
		      (json_int_t)r->revision, "dtype", r->dtype, "shape", shape, "strides",
		      strides, "offset", (json_int_t)r->offset, "extent", (json_int_t)r->lo,
		      (json_int_t)r->hi);
	if (!o)
		return -ENOMEM;
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text)
		return -ENOMEM;
	*json = text;
	if (len)
		*len = strlen(text);
	return 0;
}

static int bad(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return SHMA_EBADREF;
}

static bool get_u64(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

int shma_ref_decode(const char *json, size_t len, struct shma_ref *out, char *why,
		    size_t whylen)
{
	static const char *const keys[] = { "shma_ref", "store", "socket", "array", "revision",
					    "dtype",	"shape", "strides", "offset", "extent" };
	struct shma_ref r;
	struct dtype dt;
	json_error_t jerr;
	json_t *o, *v, *shape, *strides;
	const char *s, *reason, *key;
	__int128 lo_el, hi_el;
	uint64_t nbytes;
	size_t i;
	int err = SHMA_EBADREF;

	if (len > REF_MAX_JSON)
		return bad(why, whylen, "%zu bytes: far longer than any ArrayRef", len);
	o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return bad(why, whylen, "not JSON: %s (column %d)", jerr.text, jerr.column);
	memset(&r, 0, sizeof(r));
	if (!json_is_object(o)) {
		bad(why, whylen, "an ArrayRef is a JSON object");
		goto out;
	}
	json_object_foreach(o, key, v) {
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (!strcmp(key, keys[i]))
				break;
		if (i == sizeof(keys) / sizeof(keys[0])) {
			bad(why, whylen, "unknown field \"%.40s\"", key);
			goto out;
		}
	}
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!json_object_get(o, keys[i])) {
			bad(why, whylen, "field \"%s\" is missing", keys[i]);
			goto out;
		}
	if (json_integer_value(json_object_get(o, "shma_ref")) != REF_VERSION ||
	    !json_is_integer(json_object_get(o, "shma_ref"))) {
		bad(why, whylen, "\"shma_ref\" must be %d (the ArrayRef format version)",
		    REF_VERSION);
		goto out;
	}
	s = json_string_value(json_object_get(o, "store"));
	if (!s || !*s || strlen(s) >= sizeof(r.store)) {
		bad(why, whylen, "\"store\" must be a string of 1 to %zu characters",
		    sizeof(r.store) - 1);
		goto out;
	}
	strcpy(r.store, s);
	s = json_string_value(json_object_get(o, "socket"));
	if (!s || s[0] != '/' || strlen(s) >= sizeof(r.socket)) {
		bad(why, whylen, "\"socket\" must be an absolute path shorter than %zu bytes",
		    sizeof(r.socket));
		goto out;
	}
	strcpy(r.socket, s);
	s = json_string_value(json_object_get(o, "array"));
	if (!s || !name_ok(s, &reason)) {
		bad(why, whylen, "\"array\": %s", s ? reason : "must be a string");
		goto out;
	}
	strcpy(r.array, s);
	if (!get_u64(json_object_get(o, "revision"), &r.revision)) {
		bad(why, whylen, "\"revision\" must be a non-negative integer");
		goto out;
	}
	s = json_string_value(json_object_get(o, "dtype"));
	if (!s || dtype_parse(s, &dt, &reason)) {
		bad(why, whylen, "\"dtype\": %s", s ? reason : "must be a string");
		goto out;
	}
	strcpy(r.dtype, dt.str);
	shape = json_object_get(o, "shape");
	strides = json_object_get(o, "strides");
	if (!json_is_array(shape) || !json_is_array(strides) ||
	    json_array_size(shape) != json_array_size(strides) ||
	    json_array_size(shape) > SHMA_MAXDIM) {
		bad(why, whylen, "\"shape\" and \"strides\" must be arrays of equal length, at "
		    "most %d", SHMA_MAXDIM);
		goto out;
	}
	r.ndim = (unsigned)json_array_size(shape);
	nbytes = dt.size;
	/* an axis of length 0 makes the size 0, wherever it stands */
	for (i = 0; i < r.ndim; i++)
		if (json_is_integer(json_array_get(shape, i)) &&
		    json_integer_value(json_array_get(shape, i)) == 0)
			nbytes = 0;
	for (i = 0; i < r.ndim; i++) {
		json_t *st = json_array_get(strides, i);

		if (!get_u64(json_array_get(shape, i), &r.shape[i]) || r.shape[i] >= REF_LIMIT) {
			bad(why, whylen, "shape[%zu] must be a non-negative integer below 2^60", i);
			goto out;
		}
		if (!json_is_integer(st) || json_integer_value(st) >= (json_int_t)REF_LIMIT ||
		    json_integer_value(st) <= -(json_int_t)REF_LIMIT) {
			bad(why, whylen, "strides[%zu] must be an integer of magnitude below 2^60", i);
			goto out;
		}
		r.strides[i] = (int64_t)json_integer_value(st);
		if (__builtin_mul_overflow(nbytes, r.shape[i], &nbytes) || nbytes >= REF_LIMIT) {
			bad(why, whylen, "the shape's size overflows");
			goto out;
		}
	}
	v = json_object_get(o, "extent");
	if (!get_u64(json_object_get(o, "offset"), &r.offset) || r.offset >= REF_LIMIT ||
	    !json_is_array(v) || json_array_size(v) != 2 || !get_u64(json_array_get(v, 0), &r.lo) ||
	    !get_u64(json_array_get(v, 1), &r.hi) || r.hi >= REF_LIMIT) {
		bad(why, whylen, "\"offset\" must be a non-negative integer and \"extent\" a pair "
		    "[lo, hi) of them, below 2^60");
		goto out;
	}
	if (r.lo > r.hi) {
		bad(why, whylen, "extent [%" PRIu64 ", %" PRIu64 ") has lo > hi", r.lo, r.hi);
		goto out;
	}
	/* every element reachable through shape and strides lies in [lo, hi)
	 * (128-bit: 32 axes of 2^60 cannot overflow it) */
	if (nbytes > 0) {
		lo_el = hi_el = (__int128)r.offset;
		for (i = 0; i < r.ndim; i++) {
			__int128 span = (__int128)(r.shape[i] - 1) * r.strides[i];

			if (span < 0)
				lo_el += span;
			else
				hi_el += span;
		}
		hi_el += dt.size;
		if (lo_el < (__int128)r.lo || hi_el > (__int128)r.hi) {
			bad(why, whylen, "the view's elements reach outside its extent [%" PRIu64
			    ", %" PRIu64 ")", r.lo, r.hi);
			goto out;
		}
	}
	*out = r;
	err = 0;
out:
	json_decref(o);
	return err;
}

/* ---- open ---------------------------------------------------------------- */

/* This process's connections to brokers, for opening refs: one per socket
 * path.  A connection whose broker went away is replaced; it is freed once
 * no ref handle of it is open. */
struct refconn {
	struct refconn *next;
	shma_conn *c;
};

static pthread_mutex_t refconns_lock = PTHREAD_MUTEX_INITIALIZER;
static struct refconn *refconns;

static int ref_conn(const char *path, shma_conn **out)
{
	struct shma_conn_options opts = { .no_invalidations = true };
	struct refconn **pp, *rc;
	int err;

	pthread_mutex_lock(&refconns_lock);
	for (pp = &refconns; (rc = *pp);) {
		if (rc->c->fd < 0 && list_empty(&rc->c->refs)) {
			/* lost and unused: let it go */
			*pp = rc->next;
			shma_disconnect(&rc->c);
			free(rc);
			continue;
		}
		if (rc->c->fd >= 0 && rc->c->pid == getpid() && !strcmp(rc->c->path, path)) {
			*out = rc->c;
			pthread_mutex_unlock(&refconns_lock);
			return 0;
		}
		pp = &rc->next;
	}
	rc = calloc(1, sizeof(*rc));
	/* it only opens refs at their own (pinned) revisions: no snapshot pin,
	 * or the revision it connected at would be kept for its lifetime */
	err = rc ? conn_connect(path, &opts, false, &rc->c) : -ENOMEM;
	if (err) {
		free(rc);
	} else {
		rc->next = refconns;
		refconns = rc;
		*out = rc->c;
	}
	pthread_mutex_unlock(&refconns_lock);
	return err;
}

static int open_at(struct shma_conn *c, const struct shma_ref *r, bool head, json_t **reply)
{
	json_t *req = json_pack("{s:s,s:s,s:b,s:[I,I],s:b}", "op", "open", "name", r->array, "pin",
				1, "extent", (json_int_t)r->lo, (json_int_t)r->hi, "compact", 1);

	if (req && !head)
		json_object_set_new(req, "revision", json_integer((json_int_t)r->revision));
	return conn_call(c, req, NULL, 0, reply, NULL, NULL);
}

/* Open r through c, whose lock the caller holds. */
static int ref_open_locked(struct shma_conn *c, const struct shma_ref *r, unsigned flags,
			   const struct dtype *dtp, shma_array **out, struct shma_view *view)
{
	const struct dtype dt = *dtp;
	struct shma_array *a;
	struct shma_view v;
	uint64_t rev;
	json_t *rep;
	int err;

	if (strcmp(c->store, r->store))
		return conn_error(c, SHMA_ESTORE, "the ref names store %s, but the broker at %s is "
				  "store %s (re-created?)", r->store, r->socket, c->store);
	err = open_at(c, r, false, &rep);
	if (err == SHMA_ENOTKEPT && (flags & SHMA_REF_HEAD))
		err = open_at(c, r, true, &rep);
	if (err)
		return err == -EINVAL ? SHMA_EBADREF : err;
	rev = (uint64_t)json_integer_value(json_object_get(rep, "revision"));
	err = array_new_ref(c, json_object_get(rep, "meta"), json_object_get(rep, "runs"), rev,
			    r->lo, r->hi, &a);
	json_decref(rep);
	if (err) {
		json_t *u;

		if (conn_call(c, json_pack("{s:s,s:I}", "op", "unpin", "revision", (json_int_t)rev),
			      NULL, 0, &u, NULL, NULL) == 0)
			json_decref(u);
		return err;
	}
	list_add_tail(&a->link, &c->refs);
	/* the view: the ref's geometry over this mapping */
	memset(&v, 0, sizeof(v));
	v.base = (char *)(uintptr_t)((uintptr_t)shma_mapping_addr(a->map) - a->first * a->blksize);
	v.data = v.base + r->offset;
	memcpy(v.dtype, dt.str, sizeof(v.dtype));
	v.itemsize = dt.size;
	v.ndim = r->ndim;
	memcpy(v.shape, r->shape, r->ndim * sizeof(*v.shape));
	memcpy(v.strides, r->strides, r->ndim * sizeof(*v.strides));
	v.array = a;
	*out = a;
	*view = v;
	return 0;
}

int shma_ref_open(const struct shma_ref *r, unsigned flags, shma_array **out,
		  struct shma_view *view)
{
	struct shma_conn *c;
	struct dtype dt;
	const char *why;
	int err;

	if (flags & ~(unsigned)SHMA_REF_HEAD)
		return -EINVAL;
	if (dtype_parse(r->dtype, &dt, &why) || r->ndim > SHMA_MAXDIM || r->lo > r->hi)
		return SHMA_EBADREF;
	err = ref_conn(r->socket, &c);
	if (err)
		return err; /* shma_connect set shma_last_error */
	err = conn_enter(c);
	if (err)
		return err;
	err = ref_open_locked(c, r, flags, &dt, out, view);
	conn_set_last_error(err ? c->err : "");
	return conn_leave(c, err);
}

uint64_t shma_array_revision(shma_array *a)
{
	uint64_t r;

	pthread_mutex_lock(&a->conn->lock);
	r = a->is_ref ? a->ref_rev : a->conn->snap;
	pthread_mutex_unlock(&a->conn->lock);
	return r;
}

int shma_lease(shma_conn *c, uint64_t rev, unsigned ms)
{
	json_t *r;
	int err = conn_enter(c);

	if (err)
		return err;
	err = conn_call(c, json_pack("{s:s,s:I,s:I}", "op", "lease", "revision", (json_int_t)rev,
				     "ms", (json_int_t)ms),
			NULL, 0, &r, NULL, NULL);
	if (!err)
		json_decref(r);
	return conn_leave(c, err);
}

/* ---- ZeroMQ -------------------------------------------------------------- */

int shma_ref_send(void *zsock, const struct shma_ref *r, int flags)
{
	char *json;
	size_t len;
	int err;

	err = shma_ref_encode(r, &json, &len);
	if (err)
		return err;
	if (zmq_send(zsock, REF_TYPE_FRAME, strlen(REF_TYPE_FRAME), flags | ZMQ_SNDMORE) < 0 ||
	    zmq_send(zsock, json, len, flags) < 0)
		err = -zmq_errno();
	free(json);
	return err;
}

/* Read and drop the rest of a multipart message. */
static void drain(void *zsock)
{
	int more = 1;
	size_t ml = sizeof(more);

	while (zmq_getsockopt(zsock, ZMQ_RCVMORE, &more, &ml) == 0 && more) {
		zmq_msg_t m;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, zsock, 0) < 0) {
			zmq_msg_close(&m);
			return;
		}
		zmq_msg_close(&m);
	}
}

int shma_ref_recv(void *zsock, struct shma_ref *r, int flags, char *why, size_t whylen)
{
	zmq_msg_t type, body;
	int more = 0, err;
	size_t ml = sizeof(more);

	zmq_msg_init(&type);
	if (zmq_msg_recv(&type, zsock, flags) < 0) {
		err = -zmq_errno();
		zmq_msg_close(&type);
		return err;
	}
	zmq_getsockopt(zsock, ZMQ_RCVMORE, &more, &ml);
	if (zmq_msg_size(&type) != strlen(REF_TYPE_FRAME) ||
	    memcmp(zmq_msg_data(&type), REF_TYPE_FRAME, strlen(REF_TYPE_FRAME)) || !more) {
		zmq_msg_close(&type);
		drain(zsock);
		return bad(why, whylen, "not an ArrayRef message (its first frame must be \"%s\", "
			   "followed by the JSON)", REF_TYPE_FRAME);
	}
	zmq_msg_close(&type);
	zmq_msg_init(&body);
	if (zmq_msg_recv(&body, zsock, 0) < 0) {
		err = -zmq_errno();
		zmq_msg_close(&body);
		return err;
	}
	zmq_getsockopt(zsock, ZMQ_RCVMORE, &more, &ml);
	if (more) { /* a ref is exactly two frames */
		zmq_msg_close(&body);
		drain(zsock);
		return bad(why, whylen, "an ArrayRef message has exactly two frames (\"%s\" and "
			   "the JSON); this one has more", REF_TYPE_FRAME);
	}
	err = shma_ref_decode(zmq_msg_data(&body), zmq_msg_size(&body), r, why, whylen);
	zmq_msg_close(&body);
	return err;
}
