/* server.c - shma-broker's main loop (see server.h; the protocol is in
 * docs/PROTOCOL.md).
 *
 * Snapshots: a client's snapshot revision is pinned in the catalog from
 * hello until it disconnects.  When a commit or sync moves it, the old one
 * stays pinned until the client's next request: by then the client has
 * applied the reply's changes (unmapped the blocks that changed), so no slot
 * it may still have mapped can be reused before it stops looking at it.
 */
#include "server.h"
#include "catalog.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "pub.h"
#include "shma.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_BIG_MESSAGE ((size_t)256 << 20) /* largest JSON text, in a memfd */
#define MAX_OUTQ_BYTES ((size_t)64 << 20)   /* queued replies before a client is cut */
#define MAX_GROUPS 64
#define GC_INTERVAL_MS 1000
#define GATHER_ROUNDS 4 /* polls for more changes before a batch syncs */
#define INV_MAX_PAIRS 65536 /* blocks in one invalidation before another starts */

struct outmsg {
	struct outmsg *next;
	char *text; /* the datagram: the text itself or an envelope */
	size_t len;
	int fds[2]; /* owned: a big-message memfd and/or the pool fd */
	int nfds;
	size_t cost; /* bytes it holds, for the queue bound */
};

struct opened {
	char name[CAT_NAME_MAX + 1];
	uint64_t id; /* incarnation seen at the client's snapshot */
};

struct lease {
	uint64_t rev;
	uint64_t until_ms;
};

struct client {
	struct list_head link;
	int fd;
	uint64_t serial; /* for logs */
	pid_t pid;
	uid_t uid;
	enum access access;
	bool hello;
	uint64_t snap;	  /* the snapshot; pinned if snap_pinned */
	bool snap_pinned; /* hello "pin": false leaves it unpinned until a sync */
	uint64_t oldsnap; /* pinned until the next request, if has_old */
	bool has_old;
	struct opened *opened;
	size_t nopened, capopened;
	uint64_t *pins; /* revisions pinned by open with "pin" (refs) */
	size_t npins, cappins;
	struct outmsg *outq, **outtail;
	size_t outbytes;
	bool polls_out; /* its epoll entry asks for EPOLLOUT (a queue waits) */
	unsigned npending; /* changes of the open batch waiting for the store */
	bool closing; /* disconnect once the queue is flushed */
	bool dead;    /* closed; freed by reap() after the current event batch */
};

struct server {
	const struct broker_config *cfg;
	int epfd, lfd, sigfd, timerfd;
	struct pool pool;
	bool pool_ok;
	struct catalog *cat;
	struct store *store; /* store_memory, or the LMDB store (owned) */
	struct pending *pend, **pend_tail; /* the open batch's changes, in order */
	bool stop;
	bool hold; /* replies wait for the batch (a change's error, see handle) */
	struct pub *pub;
	/* the invalidation being gathered for the batch's changes, published
	 * once they are durable; merged: names whose block lists were joined */
	json_t *inv, *inv_merged;
	size_t inv_pairs;
	bool inv_broken; /* a join failed (no memory): it goes out truncated */
	struct proto_rbuf rbuf; /* requests are received into it */
	struct list_head clients;
	struct list_head dead; /* closed clients, freed after the event batch */
	struct lease *leases;  /* revisions kept for refs in flight */
	size_t nleases, capleases;
	size_t nclients;
	uint64_t serial;
	char store_id[33];
	uint64_t start_ms;
	bool socket_bound;
};

/* A change made in the catalog but not yet durable: its reply and its
 * invalidation wait for the store's sync (group commit). */
enum pend_kind { PEND_CREATE, PEND_DELETE, PEND_COMMIT, PEND_REPLY };

struct pending {
	struct pending *next;
	enum pend_kind kind;
	struct client *c; /* may be dead by then: reaped only after the batch */
	json_t *id;	  /* the request's id (a reference), or NULL */
	uint64_t rev;
	uint64_t from;	   /* COMMIT: the client's snapshot before */
	uint64_t arr_id;   /* DELETE: the incarnation deleted */
	char name[CAT_NAME_MAX + 1]; /* CREATE, DELETE */
	struct cat_result res;	     /* COMMIT */
	bool pinned;		     /* COMMIT: rev is pinned for it */
	json_t *reply;		     /* REPLY: sent as it is, whatever the sync did */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- replies ------------------------------------------------------------- */

static const char *code_name(int code)
{
	switch (code) {
	case SHMA_ECONFLICT:
		return "conflict";
	case SHMA_ENOTKEPT:
		return "not_kept";
	case SHMA_EPROTOCOL:
		return "protocol";
	case -ENOENT:
		return "not_found";
	case -EEXIST:
		return "exists";
	case -ENOSPC:
		return "no_space";
	case -EACCES:
		return "denied";
	case -EROFS:
		return "read_only";
	case -EMSGSIZE:
		return "too_large";
	case -EUSERS:
		return "limit";
	case -EINVAL:
		return "invalid";
	case -EIO:
		return "io";
	default:
		return "internal";
	}
}

static void client_close(struct server *s, struct client *c);

static void outmsg_free(struct outmsg *m)
{
	for (int i = 0; i < m->nfds; i++)
		util_close(m->fds[i]);
	free(m->text);
	free(m);
}

/* Send what is queued; false if the client had to be dropped. */
static bool client_flush(struct server *s, struct client *c)
{
	if (c->dead)
		return false;
	while (c->outq) {
		struct outmsg *m = c->outq;
		int r = proto_send_raw(c->fd, m->text, m->len, m->fds, m->nfds, MSG_DONTWAIT);

		if (r == -EAGAIN)
			break;
		if (r < 0) {
			log_info("client %" PRIu64 ": send failed (%s): disconnecting", c->serial,
				 strerror(-r));
			client_close(s, c);
			return false;
		}
		c->outq = m->next;
		if (!c->outq)
			c->outtail = &c->outq;
		c->outbytes -= m->cost;
		outmsg_free(m);
	}
	if (c->polls_out != (c->outq != NULL)) { /* most replies go out at once */
		struct epoll_event ev = { .events = EPOLLIN | (c->outq ? EPOLLOUT : 0),
					  .data.ptr = c };

		if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
			c->polls_out = c->outq != NULL;
	}
	if (!c->outq && c->closing) {
		client_close(s, c);
		return false;
	}
	return true;
}

/* Queue text (a JSON object, consumed) for c, with optional extra_fd
 * (borrowed: it is duplicated). */
static bool hold_reply(struct server *s, struct client *c, json_t *obj);

static void reply(struct server *s, struct client *c, json_t *obj, int extra_fd)
{
	struct outmsg *m;
	char env[64];
	char *text;
	size_t len, cost;
	int bigfd = -1;

	if (s->hold && extra_fd < 0 && hold_reply(s, c, obj))
		return;
	m = calloc(1, sizeof(*m));
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (c->dead) {
		free(text);
		free(m);
		return;
	}
	if (!m || !text)
		goto err_drop;
	len = cost = strlen(text); /* a big reply costs its text, not its envelope */
	if (proto_pack(text, len, s->cfg->max_message, env, sizeof(env), &bigfd) < 0)
		goto err_drop;
	if (bigfd >= 0) {
		free(text);
		text = strdup(env);
		if (!text)
			goto err_drop;
		len = strlen(text);
		m->fds[m->nfds++] = bigfd;
		bigfd = -1;
	}
	if (extra_fd >= 0) {
		int d = fcntl(extra_fd, F_DUPFD_CLOEXEC, 0);

		if (d < 0)
			goto err_drop;
		m->fds[m->nfds++] = d;
	}
	m->text = text;
	m->len = len;
	m->cost = cost;
	*c->outtail = m;
	c->outtail = &m->next;
	c->outbytes += cost;
	if (c->outbytes > MAX_OUTQ_BYTES) {
		log_warn("client %" PRIu64 " does not read its replies: disconnecting", c->serial);
		client_close(s, c);
		return;
	}
	client_flush(s, c);
	return;

err_drop:
	log_error("client %" PRIu64 ": cannot build a reply: disconnecting", c->serial);
	free(text);
	if (m)
		outmsg_free(m);
	util_close(bigfd);
	client_close(s, c);
}

static json_t *error_obj(int code, const char *msg)
{
	return json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", code_name(code),
			 "message", msg);
}

static void reply_error(struct server *s, struct client *c, json_t *id, int code,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void reply_error(struct server *s, struct client *c, json_t *id, int code,
			const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = error_obj(code, msg);
	if (o && id)
		json_object_set(o, "id", id);
	if (o)
		reply(s, c, o, -1);
}

static void reply_cat_error(struct server *s, struct client *c, json_t *id,
			    const struct cat_err *err)
{
	json_t *o = error_obj(err->code, err->msg), *e;

	if (!o)
		return;
	if (id)
		json_object_set(o, "id", id);
	e = json_object_get(o, "error");
	if (err->array[0])
		json_object_set_new(e, "array", json_string(err->array));
	if (err->nblocks) {
		json_t *b = json_array();

		for (size_t i = 0; i < err->nblocks; i++)
			json_array_append_new(b, json_integer((json_int_t)err->blocks[i]));
		json_object_set_new(e, "blocks", b);
	}
	reply(s, c, o, -1);
}

static json_t *ok_obj(json_t *id)
{
	json_t *o = json_pack("{s:b}", "ok", 1);

	if (o && id)
		json_object_set(o, "id", id);
	return o;
}

/* ---- JSON of catalog things ---------------------------------------------- */

static json_t *slot_json(uint64_t slot)
{
	return slot == CAT_HOLE ? json_null() : json_integer((json_int_t)slot);
}

static json_t *meta_json(const struct cat_array *a, const struct cat_meta *m)
{
	json_t *shape = json_array();

	for (unsigned i = 0; i < m->ndim; i++)
		json_array_append_new(shape, json_integer((json_int_t)m->shape[i]));
	return json_pack("{s:s,s:I,s:s,s:o,s:s#,s:I,s:I,s:I}", "name", a->name, "id",
			 (json_int_t)a->id, "dtype", a->dtype.str, "shape", shape, "order",
			 &a->order, (size_t)1, "block_size", (json_int_t)a->blksize, "nbytes",
			 (json_int_t)m->nbytes, "created", (json_int_t)a->created);
}

static void add_pair(uint64_t blk, uint64_t slot, void *arg)
{
	json_t *pair = json_array();

	json_array_append_new(pair, json_integer((json_int_t)blk));
	json_array_append_new(pair, slot_json(slot));
	json_array_append_new(arg, pair);
}

static bool meta_equal(const struct cat_meta *x, const struct cat_meta *y)
{
	return x->ndim == y->ndim && x->nbytes == y->nbytes &&
	       !memcmp(x->shape, y->shape, x->ndim * sizeof(x->shape[0]));
}

/* What changed for c's opened arrays between revisions from and to;
 * updates c->opened (deleted ones are dropped, re-created ones renamed to
 * their new incarnation). */
static json_t *changes_json(struct server *s, struct client *c, uint64_t from, uint64_t to)
{
	json_t *arrays = json_object();
	size_t i = 0;

	while (i < c->nopened) {
		struct opened *op = &c->opened[i];
		struct cat_array *a = catalog_find(s->cat, op->name, to);
		json_t *e;

		if (!a) {
			json_object_set_new(arrays, op->name, json_pack("{s:b}", "deleted", 1));
			c->opened[i] = c->opened[--c->nopened];
			continue;
		}
		if (a->id != op->id || a->created > from) {
			/* created (again) in between: everything is new */
			json_t *blocks = json_array();

			e = json_pack("{s:b,s:o}", "recreated", 1, "meta",
				      meta_json(a, catalog_meta_at(a, to)));
			catalog_blocks_at(a, to, add_pair, blocks);
			json_object_set_new(e, "blocks", blocks);
			op->id = a->id;
		} else {
			const struct cat_meta *mf = catalog_meta_at(a, from), *mt = catalog_meta_at(a, to);
			uint64_t older = from < to ? from : to;
			json_t *blocks = json_array();

			/* nothing changed since the older revision: skip the walk */
			if (a->data_rev > older)
				catalog_changes(a, from, to, add_pair, blocks);
			if (json_array_size(blocks) == 0 && meta_equal(mf, mt)) {
				json_decref(blocks);
				i++;
				continue;
			}
			e = json_pack("{s:o}", "blocks", blocks);
			if (!meta_equal(mf, mt))
				json_object_set_new(e, "meta", meta_json(a, mt));
		}
		json_object_set_new(arrays, op->name, e);
		i++;
	}
	return arrays;
}

/* ---- invalidations ------------------------------------------------------- */

/* Publish o (consumed): one stream message for the revisions (prev,
 * revision]; truncated (subscribers resynchronise) if it is too big or
 * `broken`. */
static void publish_json(struct server *s, json_t *o, bool broken)
{
	json_int_t rev = json_integer_value(json_object_get(o, "revision"));
	json_int_t prev = json_integer_value(json_object_get(o, "prev"));
	char *text = broken ? NULL : json_dumps(o, JSON_COMPACT);

	json_decref(o);
	if (!text && !broken)
		return;
	if (broken || strlen(text) > MAX_BIG_MESSAGE / 16) {
		/* too big to be useful: subscribers resynchronise over the socket */
		json_t *t = json_pack("{s:s,s:I,s:I,s:b}", "store", s->store_id, "revision", rev,
				      "prev", prev, "truncated", 1);

		free(text);
		text = t ? json_dumps(t, JSON_COMPACT) : NULL;
		json_decref(t);
		if (!text)
			return;
	}
	pub_send(s->pub, text, strlen(text));
	free(text);
}

struct pair_at {
	uint64_t blk;
	size_t i; /* position in the joined list: later is newer */
};

static int cmp_pair_at(const void *x, const void *y)
{
	const struct pair_at *a = x, *b = y;

	if (a->blk != b->blk)
		return a->blk < b->blk ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/* A joined block list in block order, each block once with its newest slot.
 * (Two commits of one batch cannot change one block: the later one would
 * conflict.  The list is right whatever it holds.) */
static void blocks_dedup(json_t *e)
{
	json_t *blocks = json_object_get(e, "blocks"), *out;
	size_t n = json_array_size(blocks);
	struct pair_at *v = malloc((n + 1) * sizeof(*v));

	out = json_array();
	if (!v || !out) {
		free(v);
		json_decref(out);
		return; /* left as it is: every pair in order, the newest last */
	}
	for (size_t i = 0; i < n; i++)
		v[i] = (struct pair_at){
			(uint64_t)json_integer_value(json_array_get(json_array_get(blocks, i), 0)), i
		};
	qsort(v, n, sizeof(*v), cmp_pair_at);
	for (size_t i = 0; i < n && out; i++)
		if ((i + 1 == n || v[i + 1].blk != v[i].blk) &&
		    json_array_append(out, json_array_get(blocks, v[i].i))) {
			json_decref(out); /* the joined list stays: right, if longer */
			out = NULL;
		}
	if (out)
		json_object_set_new(e, "blocks", out);
	free(v);
}

/* Publish the gathered invalidation, if any. */
static void inval_publish(struct server *s)
{
	json_t *arrs, *v;
	const char *name;

	if (!s->inv)
		return;
	arrs = json_object_get(s->inv, "arrays");
	json_object_foreach(s->inv_merged, name, v)
		blocks_dedup(json_object_get(arrs, name));
	json_object_clear(s->inv_merged);
	publish_json(s, s->inv, s->inv_broken);
	s->inv = NULL;
	s->inv_pairs = 0;
	s->inv_broken = false;
}

/* Do the entries a and b of one name join in one message?  Two commits'
 * entries of the same incarnation do. */
static bool inval_joins(json_t *a, json_t *b)
{
	return !json_object_get(a, "created") && !json_object_get(a, "deleted") &&
	       !json_object_get(b, "created") && !json_object_get(b, "deleted") &&
	       json_equal(json_object_get(a, "id"), json_object_get(b, "id"));
}

/* Add what revision rev did (changes: {name: entry}, consumed) to the
 * gathered invalidation.  The changes of one batch share one message, so a
 * subscriber wakes once per batch, not once per commit: a message covers
 * the revisions (prev, revision], and its entries say where each array
 * ended up.  A commit's blocks join an earlier commit's to the same
 * incarnation; a revision with an entry that does not join (a create or a
 * delete of a name the message already has, or the other way round) starts
 * a new message, as does a message grown past INV_MAX_PAIRS blocks. */
static void inval_add(struct server *s, uint64_t rev, json_t *changes)
{
	size_t n = 0;
	const char *name;
	json_t *arrs, *e, *old;

	json_object_foreach(changes, name, e)
		n += json_array_size(json_object_get(e, "blocks"));
	if (s->inv) {
		/* a revision with nothing published (no memory for its entries,
		 * or for its pending record) must show as a gap, not be covered */
		bool joins = changes && s->inv_pairs + n <= INV_MAX_PAIRS &&
			     rev == (uint64_t)json_integer_value(json_object_get(s->inv, "revision")) + 1;

		arrs = json_object_get(s->inv, "arrays");
		json_object_foreach(changes, name, e) {
			old = json_object_get(arrs, name);
			joins = joins && (!old || inval_joins(old, e));
		}
		if (!joins)
			inval_publish(s);
	}
	if (!changes)
		return; /* the next message's prev shows the gap */
	if (!s->inv) {
		s->inv = json_pack("{s:s,s:I,s:I,s:o}", "store", s->store_id, "revision",
				   (json_int_t)rev, "prev", (json_int_t)rev - 1, "arrays",
				   json_object());
		if (!s->inv) {
			json_decref(changes); /* subscribers will see a gap, and resync */
			return;
		}
	}
	s->inv_broken |= json_object_set_new(s->inv, "revision", json_integer((json_int_t)rev)) != 0;
	s->inv_pairs += n;
	arrs = json_object_get(s->inv, "arrays");
	json_object_foreach(changes, name, e) {
		json_t *meta = json_object_get(e, "meta");

		old = json_object_get(arrs, name);
		if (!old) {
			s->inv_broken |= json_object_set(arrs, name, e) != 0;
			continue;
		}
		s->inv_broken |= json_array_extend(json_object_get(old, "blocks"),
						   json_object_get(e, "blocks")) != 0 ||
				 (meta && json_object_set(old, "meta", meta) != 0) ||
				 json_object_set_new(s->inv_merged, name, json_true()) != 0;
	}
	json_decref(changes);
}

/* ---- request helpers ----------------------------------------------------- */

struct req {
	json_t *j;
	json_t *id; /* borrowed from j, may be NULL */
	struct proto_msg *msg;
};

/* Field helpers: on a problem, reply with an error and return false. */
static bool get_str(struct server *s, struct client *c, struct req *r, const char *key,
		    const char **out)
{
	json_t *v = json_object_get(r->j, key);

	if (!json_is_string(v)) {
		reply_error(s, c, r->id, -EINVAL, "\"%s\" must be a string", key);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

static bool json_u64(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static bool get_u64(struct server *s, struct client *c, struct req *r, const char *key,
		    bool required, uint64_t *out)
{
	json_t *v = json_object_get(r->j, key);

	if (!v && !required)
		return true;
	if (!json_u64(v, out)) {
		reply_error(s, c, r->id, -EINVAL, "\"%s\" must be a non-negative integer", key);
		return false;
	}
	return true;
}

/* Parse a shape array into m; *why on failure. */
static bool parse_shape(json_t *v, struct cat_meta *m, const char **why)
{
	size_t i;
	json_t *d;

	if (!json_is_array(v) || json_array_size(v) > CAT_MAXDIM) {
		*why = "\"shape\" must be an array of at most 32 non-negative integers";
		return false;
	}
	m->ndim = (unsigned)json_array_size(v);
	json_array_foreach(v, i, d) {
		if (!json_u64(d, &m->shape[i])) {
			*why = "\"shape\" must be an array of at most 32 non-negative integers";
			return false;
		}
	}
	return true;
}

static bool opened_add(struct client *c, const struct cat_array *a)
{
	for (size_t i = 0; i < c->nopened; i++)
		if (!strcmp(c->opened[i].name, a->name)) {
			c->opened[i].id = a->id;
			return true;
		}
	if (c->nopened == c->capopened) {
		size_t ncap = c->capopened ? c->capopened * 2 : 8;
		struct opened *n = realloc(c->opened, ncap * sizeof(*n));

		if (!n)
			return false;
		c->opened = n;
		c->capopened = ncap;
	}
	snprintf(c->opened[c->nopened].name, sizeof(c->opened[0].name), "%s", a->name);
	c->opened[c->nopened++].id = a->id;
	return true;
}

/* Move c's snapshot to rev (pinned); the old one stays pinned until the
 * next request. */
static int move_snapshot(struct server *s, struct client *c, uint64_t rev, struct cat_err *err)
{
	int r = catalog_pin(s->cat, rev, err);

	if (r)
		return r;
	if (!c->snap_pinned) { /* nothing of the old one to keep */
		c->snap_pinned = true;
		c->snap = rev;
		return 0;
	}
	if (c->has_old)
		catalog_unpin(s->cat, c->oldsnap);
	c->oldsnap = c->snap;
	c->has_old = true;
	c->snap = rev;
	return 0;
}

static bool may_write(struct server *s, struct client *c, struct req *r)
{
	if (c->access == ACCESS_RW)
		return true;
	reply_error(s, c, r->id, -EROFS, "this connection is read-only (uid %u): see the "
		    "broker's access configuration", (unsigned)c->uid);
	return false;
}

/* ---- the batch of changes waiting for the store --------------------------- */

/* Note a change made in the catalog (in the open batch); it is
 * acknowledged by server_flush.  NULL (the client is dropped) without
 * memory: the change itself stays in the batch. */
static struct pending *pending_add(struct server *s, struct client *c, struct req *r,
				   enum pend_kind kind, uint64_t rev, const char *name)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		log_error("client %" PRIu64 ": out of memory: disconnecting", c->serial);
		client_close(s, c);
		return NULL;
	}
	p->kind = kind;
	p->c = c;
	p->id = json_incref(r->id);
	p->rev = rev;
	if (name)
		snprintf(p->name, sizeof(p->name), "%s", name);
	*s->pend_tail = p;
	s->pend_tail = &p->next;
	c->npending++;
	return p;
}

/* A reply (consumed) that waits for the open batch: a change refused while
 * a batch is open (a conflict, "exists") may speak of the batch's
 * revisions, which the sync could still undo.  false: send it now. */
static bool hold_reply(struct server *s, struct client *c, json_t *obj)
{
	struct req r = { .id = NULL };
	struct pending *p;

	if (!catalog_batch_open(s->cat))
		return false;
	s->hold = false; /* pending_add may reply (and drop the client) */
	p = pending_add(s, c, &r, PEND_REPLY, 0, NULL);
	s->hold = true;
	if (!p) {
		json_decref(obj);
		return true;
	}
	p->reply = obj;
	return true;
}

static void finish_create(struct server *s, struct pending *p);
static void finish_delete(struct server *s, struct pending *p);
static void finish_commit(struct server *s, struct pending *p);

/* Make the open batch durable with one store sync, then acknowledge its
 * changes in order (replies, invalidations); if the store failed, undo them
 * all and tell each client why.  Nothing of a batch is visible to another
 * request before this: requests other than changes flush first (handle). */
static void server_flush(struct server *s)
{
	struct pending *p;
	int r = 0;

	if (!catalog_batch_open(s->cat))
		return;
	catalog_fill_start(s->cat); /* the slots' unchanged pages, meanwhile */
	if (s->store->ops->pending(s->store))
		r = s->store->ops->sync(s->store);
	catalog_batch_end(s->cat, r == 0);
	if (r) {
		size_t n = 0;

		for (p = s->pend; p; p = p->next)
			n += p->kind != PEND_REPLY;
		log_error("the store failed (%s): %zu change%s undone", strerror(-r), n,
			  n == 1 ? "" : "s");
	}
	while ((p = s->pend)) {
		s->pend = p->next;
		p->c->npending--;
		if (p->kind == PEND_REPLY) {
			reply(s, p->c, p->reply, -1);
			p->reply = NULL;
		} else if (!r) {
			if (p->kind == PEND_CREATE)
				finish_create(s, p);
			else if (p->kind == PEND_DELETE)
				finish_delete(s, p);
			else
				finish_commit(s, p);
		} else {
			reply_error(s, p->c, p->id, r == -ENOSPC ? -ENOSPC : -EIO,
				    "revision %" PRIu64 " could not be made durable, so it was not "
				    "made: %s (see the broker's log)", p->rev,
				    r == -ENOSPC ? "the store is full (store_size, or the disk)" :
				    strerror(-r));
		}
		if (p->pinned)
			catalog_unpin(s->cat, p->rev);
		json_decref(p->id);
		catalog_result_free(&p->res);
		free(p);
	}
	s->pend_tail = &s->pend;
	inval_publish(s); /* the batch's changes, in one message */
	catalog_gc(s->cat, now_ms());
}

/* ---- requests ------------------------------------------------------------ */

static void op_hello(struct server *s, struct client *c, struct req *r)
{
	uint64_t version;
	struct cat_err err;
	json_t *o, *jpin;

	if (!get_u64(s, c, r, "version", true, &version))
		return;
	if (version != PROTO_VERSION) {
		c->closing = true; /* closed once this reply is out */
		reply_error(s, c, r->id, SHMA_EPROTOCOL, "protocol version %" PRIu64
			    " is not supported (this broker speaks version %d)", version,
			    PROTO_VERSION);
		return;
	}
	if (c->hello) {
		reply_error(s, c, r->id, SHMA_EPROTOCOL, "hello was already done");
		return;
	}
	jpin = json_object_get(r->j, "pin");
	if (jpin && !json_is_boolean(jpin)) {
		reply_error(s, c, r->id, -EINVAL, "\"pin\" must be true or false");
		return;
	}
	c->snap_pinned = !json_is_false(jpin);
	if (c->snap_pinned && catalog_pin(s->cat, catalog_head(s->cat), &err)) {
		reply_cat_error(s, c, r->id, &err);
		return;
	}
	c->hello = true;
	c->snap = catalog_head(s->cat);
	o = ok_obj(r->id);
	json_object_set_new(o, "version", json_integer(PROTO_VERSION));
	json_object_set_new(o, "store", json_string(s->store_id));
	json_object_set_new(o, "pool_size", json_integer((json_int_t)s->pool.size));
	json_object_set_new(o, "max_message", json_integer((json_int_t)s->cfg->max_message));
	json_object_set_new(o, "publish", json_string(s->cfg->publish));
	json_object_set_new(o, "revision", json_integer((json_int_t)c->snap));
	json_object_set_new(o, "access", json_string(c->access == ACCESS_RW ? "rw" : "ro"));
	json_object_set_new(o, "block_size", json_integer((json_int_t)s->cfg->block_size));
	reply(s, c, o, s->pool.fd);
}

static void op_create(struct server *s, struct client *c, struct req *r)
{
	struct cat_create cr = { 0 };
	struct cat_err err;
	const char *dtype, *order = "C", *why;
	uint64_t rev, blksize = s->cfg->block_size;
	json_t *ov;

	if (!may_write(s, c, r) || !get_str(s, c, r, "name", &cr.name) ||
	    !get_str(s, c, r, "dtype", &dtype) ||
	    !get_u64(s, c, r, "block_size", false, &blksize))
		return;
	ov = json_object_get(r->j, "order");
	if (ov && !(json_is_string(ov) && (order = json_string_value(ov)) &&
		    (!strcmp(order, "C") || !strcmp(order, "F")))) {
		reply_error(s, c, r->id, -EINVAL, "\"order\" must be \"C\" or \"F\"");
		return;
	}
	if (dtype_parse(dtype, &cr.dtype, &why)) {
		reply_error(s, c, r->id, -EINVAL, "bad dtype \"%.16s\": %s", dtype, why);
		return;
	}
	if (!parse_shape(json_object_get(r->j, "shape"), &cr.meta, &why)) {
		reply_error(s, c, r->id, -EINVAL, "%s", why);
		return;
	}
	cr.order = order[0];
	cr.blksize = blksize;
	catalog_batch_begin(s->cat);
	if (catalog_create(s->cat, &cr, s->cfg->max_arrays, now_ms(), &rev, &err)) {
		reply_cat_error(s, c, r->id, &err);
		return;
	}
	pending_add(s, c, r, PEND_CREATE, rev, cr.name);
}

static void finish_create(struct server *s, struct pending *p)
{
	struct cat_array *a = catalog_find(s->cat, p->name, p->rev);
	json_t *o;

	log_info("client %" PRIu64 ": created \"%s\" (%s) at revision %" PRIu64, p->c->serial,
		 p->name, a->dtype.str, p->rev);
	o = ok_obj(p->id);
	json_object_set_new(o, "revision", json_integer((json_int_t)p->rev));
	reply(s, p->c, o, -1);

	inval_add(s, p->rev,
		  json_pack("{s:{s:I,s:b,s:o}}", p->name, "id", (json_int_t)a->id, "created", 1,
			    "meta", meta_json(a, catalog_meta_at(a, p->rev))));
}

static void op_delete(struct server *s, struct client *c, struct req *r)
{
	struct cat_array *a;
	struct cat_err err;
	struct pending *p;
	const char *name;
	uint64_t rev, id;

	if (!may_write(s, c, r) || !get_str(s, c, r, "name", &name))
		return;
	a = catalog_find(s->cat, name, catalog_head(s->cat));
	id = a ? a->id : 0;
	catalog_batch_begin(s->cat);
	if (catalog_delete(s->cat, name, now_ms(), &rev, &err)) {
		reply_cat_error(s, c, r->id, &err);
		return;
	}
	p = pending_add(s, c, r, PEND_DELETE, rev, name);
	if (p)
		p->arr_id = id;
}

static void finish_delete(struct server *s, struct pending *p)
{
	json_t *o;

	log_info("client %" PRIu64 ": deleted \"%s\" at revision %" PRIu64, p->c->serial, p->name,
		 p->rev);
	o = ok_obj(p->id);
	json_object_set_new(o, "revision", json_integer((json_int_t)p->rev));
	reply(s, p->c, o, -1);
	inval_add(s, p->rev,
		  json_pack("{s:{s:I,s:b}}", p->name, "id", (json_int_t)p->arr_id, "deleted", 1));
}

static struct cat_array *find_at_snapshot(struct server *s, struct client *c, struct req *r,
					  const char **name)
{
	struct cat_array *a;

	if (!get_str(s, c, r, "name", name))
		return NULL;
	a = catalog_find(s->cat, *name, c->snap);
	if (!a)
		reply_error(s, c, r->id, -ENOENT, "no array \"%.200s\" at revision %" PRIu64,
			    *name, c->snap);
	return a;
}

static int cmp_pair_blk(const void *x, const void *y)
{
	json_int_t a = json_integer_value(json_array_get(*(json_t *const *)x, 0));
	json_int_t b = json_integer_value(json_array_get(*(json_t *const *)y, 0));

	return a < b ? -1 : a > b;
}

/* [[blk, slot], ...] -> [[first blk, count, first slot], ...]: blocks whose
 * slots follow each other form one run (an array written in one commit is
 * mostly one run), so the reply does not grow with the array. */
static json_t *runs_of(json_t *pairs, uint64_t blksize)
{
	size_t n = json_array_size(pairs), i = 0;
	json_t **v = malloc((n + 1) * sizeof(*v)), *runs = json_array();

	if (!v)
		return runs;
	for (size_t k = 0; k < n; k++)
		v[k] = json_array_get(pairs, k);
	qsort(v, n, sizeof(*v), cmp_pair_blk);
	while (i < n) {
		json_int_t b0 = json_integer_value(json_array_get(v[i], 0));
		json_int_t s0 = json_integer_value(json_array_get(v[i], 1));
		size_t j = i + 1;

		while (j < n &&
		       json_integer_value(json_array_get(v[j], 0)) == b0 + (json_int_t)(j - i) &&
		       json_integer_value(json_array_get(v[j], 1)) ==
			       s0 + (json_int_t)((j - i) * blksize))
			j++;
		json_array_append_new(runs, json_pack("[I,I,I]", b0, (json_int_t)(j - i), s0));
		i = j;
	}
	free(v);
	return runs;
}

struct range_ctx {
	json_t *blocks;
	uint64_t b0, b1;
};

static void add_in_range(uint64_t blk, uint64_t slot, void *arg)
{
	struct range_ctx *rc = arg;

	if (blk >= rc->b0 && blk < rc->b1)
		add_pair(blk, slot, rc->blocks);
}

static bool client_pins(const struct client *c, uint64_t rev)
{
	for (size_t i = 0; i < c->npins; i++)
		if (c->pins[i] == rev)
			return true;
	return false;
}

/* open: at the snapshot (the array joins this connection's sync interest),
 * or — for refs — at a given revision, optionally pinning it, optionally
 * only the blocks of a byte extent. */
static void op_open(struct server *s, struct client *c, struct req *r)
{
	json_t *jrev = json_object_get(r->j, "revision"), *jext = json_object_get(r->j, "extent");
	json_t *jpin = json_object_get(r->j, "pin"), *o, *blocks;
	json_t *jcompact = json_object_get(r->j, "compact");
	bool pin = json_is_true(jpin), ranged = jext != NULL, compact = json_is_true(jcompact);
	bool have_runs = false; /* blocks already holds runs */
	uint64_t rev = c->snap, lo = 0, hi = 0, b0 = 0, b1 = UINT64_MAX;
	const struct cat_meta *meta;
	struct cat_array *a;
	struct cat_err err;
	const char *name;

	if (!get_str(s, c, r, "name", &name))
		return;
	if ((jpin && !json_is_boolean(jpin)) ||
	    (jrev && !json_u64(jrev, &rev)) ||
	    (ranged && (!json_is_array(jext) || json_array_size(jext) != 2 ||
			!json_u64(json_array_get(jext, 0), &lo) ||
			!json_u64(json_array_get(jext, 1), &hi) || lo > hi))) {
		reply_error(s, c, r->id, -EINVAL, "open: \"revision\" must be a non-negative "
			    "integer, \"extent\" a pair [lo, hi) of byte offsets with lo <= hi, "
			    "\"pin\" a boolean");
		return;
	}
	if (pin && !jrev)
		rev = catalog_head(s->cat);
	if (pin) {
		if (c->npins >= 4096) {
			reply_error(s, c, r->id, -EUSERS, "too many pinned revisions on this "
				    "connection (4096)");
			return;
		}
		if (c->npins == c->cappins) {
			size_t ncap = c->cappins ? c->cappins * 2 : 8;
			uint64_t *n = realloc(c->pins, ncap * sizeof(*n));

			if (!n) {
				reply_error(s, c, r->id, -ENOMEM, "out of memory");
				return;
			}
			c->pins = n;
			c->cappins = ncap;
		}
		if (catalog_pin(s->cat, rev, &err)) {
			reply_cat_error(s, c, r->id, &err);
			return;
		}
		c->pins[c->npins++] = rev;
	} else if (jrev && rev != c->snap && !client_pins(c, rev)) {
		reply_error(s, c, r->id, -EINVAL, "revision %" PRIu64 " is neither this "
			    "connection's snapshot (%" PRIu64 ") nor pinned by it: open it with "
			    "\"pin\": true", rev, c->snap);
		return;
	}
	a = catalog_find(s->cat, name, rev);
	if (!a) {
		reply_error(s, c, r->id, -ENOENT, "no array \"%.200s\" at revision %" PRIu64, name,
			    rev);
		goto err_unpin;
	}
	meta = catalog_meta_at(a, rev);
	if (ranged && hi > meta->nbytes) {
		reply_error(s, c, r->id, -EINVAL, "extent [%" PRIu64 ", %" PRIu64 ") lies beyond "
			    "the end of \"%.200s\" at revision %" PRIu64 " (%" PRIu64 " bytes)", lo, hi,
			    name, rev, meta->nbytes);
		goto err_unpin;
	}
	if (!pin && rev == c->snap && !opened_add(c, a)) {
		reply_error(s, c, r->id, -ENOMEM, "out of memory");
		return;
	}
	blocks = json_array();
	if (ranged) {
		/* cost: the smaller of the extent and what the array stores */
		b0 = lo / a->blksize;
		b1 = (hi + a->blksize - 1) / a->blksize;
		if (b1 - b0 <= pagemap_len(&a->blocks) && compact) {
			/* runs straight away: no JSON per block */
			uint64_t rb = 0, rn = 0, rs = 0;

			for (uint64_t b = b0; b <= b1; b++) {
				uint64_t slot = b < b1 ? catalog_slot_at(a, b, rev) : CAT_HOLE;

				if (rn && slot != CAT_HOLE && slot == rs + rn * a->blksize &&
				    b == rb + rn) {
					rn++;
					continue;
				}
				if (rn)
					json_array_append_new(blocks,
							      json_pack("[I,I,I]", (json_int_t)rb,
									(json_int_t)rn, (json_int_t)rs));
				rn = 0;
				if (slot != CAT_HOLE) {
					rb = b;
					rs = slot;
					rn = 1;
				}
			}
			have_runs = true;
		} else if (b1 - b0 <= pagemap_len(&a->blocks)) {
			for (uint64_t b = b0; b < b1; b++) {
				uint64_t slot = catalog_slot_at(a, b, rev);

				if (slot != CAT_HOLE)
					add_pair(b, slot, blocks);
			}
		} else {
			/* a wide extent of a sparse array: walk what is stored */
			struct range_ctx rc = { blocks, b0, b1 };

			catalog_blocks_at(a, rev, add_in_range, &rc);
		}
	} else {
		catalog_blocks_at(a, rev, add_pair, blocks);
	}
	o = ok_obj(r->id);
	json_object_set_new(o, "revision", json_integer((json_int_t)rev));
	json_object_set_new(o, "meta", meta_json(a, meta));
	if (have_runs)
		json_object_set_new(o, "runs", json_incref(blocks));
	else if (compact)
		json_object_set_new(o, "runs", runs_of(blocks, a->blksize));
	else
		json_object_set_new(o, "blocks", json_incref(blocks));
	json_decref(blocks);
	reply(s, c, o, -1);
	return;

err_unpin:
	if (pin) {
		catalog_unpin(s->cat, rev);
		c->npins--;
	}
}

static void op_unpin(struct server *s, struct client *c, struct req *r)
{
	uint64_t rev;
	json_t *o;

	if (!get_u64(s, c, r, "revision", true, &rev))
		return;
	for (size_t i = 0; i < c->npins; i++)
		if (c->pins[i] == rev) {
			catalog_unpin(s->cat, rev);
			c->pins[i] = c->pins[--c->npins];
			o = ok_obj(r->id);
			json_object_set_new(o, "revision", json_integer((json_int_t)rev));
			reply(s, c, o, -1);
			return;
		}
	reply_error(s, c, r->id, -EINVAL, "revision %" PRIu64 " is not pinned by this connection",
		    rev);
}

#define MAX_LEASE_MS (3600u * 1000u)
#define MAX_LEASES 65536

/* lease: keep a revision for a while, whoever is connected, so refs in
 * flight can still be opened (the producer may be gone by then). */
static void op_lease(struct server *s, struct client *c, struct req *r)
{
	struct cat_err err;
	uint64_t rev, ms;
	json_t *o;

	if (!may_write(s, c, r) || !get_u64(s, c, r, "revision", true, &rev) ||
	    !get_u64(s, c, r, "ms", true, &ms))
		return;
	if (ms == 0 || ms > MAX_LEASE_MS) {
		reply_error(s, c, r->id, -EINVAL, "\"ms\" must be 1 to %u", MAX_LEASE_MS);
		return;
	}
	if (s->nleases >= MAX_LEASES) {
		reply_error(s, c, r->id, -EUSERS, "too many leases (%d)", MAX_LEASES);
		return;
	}
	if (s->nleases == s->capleases) {
		size_t ncap = s->capleases ? s->capleases * 2 : 16;
		struct lease *n = realloc(s->leases, ncap * sizeof(*n));

		if (!n) {
			reply_error(s, c, r->id, -ENOMEM, "out of memory");
			return;
		}
		s->leases = n;
		s->capleases = ncap;
	}
	if (catalog_pin(s->cat, rev, &err)) {
		reply_cat_error(s, c, r->id, &err);
		return;
	}
	s->leases[s->nleases++] = (struct lease){ rev, now_ms() + ms };
	o = ok_obj(r->id);
	json_object_set_new(o, "revision", json_integer((json_int_t)rev));
	json_object_set_new(o, "ms", json_integer((json_int_t)ms));
	reply(s, c, o, -1);
}

/* Release leases that ran out. */
static void expire_leases(struct server *s)
{
	uint64_t now = now_ms();
	size_t i = 0;

	while (i < s->nleases)
		if (s->leases[i].until_ms <= now) {
			catalog_unpin(s->cat, s->leases[i].rev);
			s->leases[i] = s->leases[--s->nleases];
		} else {
			i++;
		}
}

static void count_block(uint64_t blk, uint64_t slot, void *arg)
{
	(void)blk;
	(void)slot;
	(*(uint64_t *)arg)++;
}

static void op_stat(struct server *s, struct client *c, struct req *r)
{
	struct cat_array *a;
	const char *name;
	uint64_t nmat = 0;
	json_t *o, *m;

	a = find_at_snapshot(s, c, r, &name);
	if (!a)
		return;
	catalog_blocks_at(a, c->snap, count_block, &nmat);
	m = meta_json(a, catalog_meta_at(a, c->snap));
	json_object_set_new(m, "blocks_stored", json_integer((json_int_t)nmat));
	o = ok_obj(r->id);
	json_object_set_new(o, "revision", json_integer((json_int_t)c->snap));
	json_object_set_new(o, "meta", m);
	reply(s, c, o, -1);
}

struct list_ctx {
	json_t *arr;
	uint64_t rev;
};

static void list_one(struct cat_array *a, void *arg)
{
	struct list_ctx *lc = arg;

	json_array_append_new(lc->arr, meta_json(a, catalog_meta_at(a, lc->rev)));
}

static void op_list(struct server *s, struct client *c, struct req *r)
{
	struct list_ctx lc = { json_array(), c->snap };
	json_t *o;

	catalog_foreach(s->cat, c->snap, list_one, &lc);
	o = ok_obj(r->id);
	json_object_set_new(o, "revision", json_integer((json_int_t)c->snap));
	json_object_set_new(o, "arrays", lc.arr);
	reply(s, c, o, -1);
}

static void op_sync(struct server *s, struct client *c, struct req *r)
{
	uint64_t to = catalog_head(s->cat), from = c->snap;
	json_t *o, *want = json_object_get(r->j, "changes"), *changes;
	struct cat_err err;

	if (!get_u64(s, c, r, "revision", false, &to))
		return;
	if (want && !json_is_boolean(want)) {
		reply_error(s, c, r->id, -EINVAL, "\"changes\" must be true or false");
		return;
	}
	if (to != from && move_snapshot(s, c, to, &err)) {
		reply_cat_error(s, c, r->id, &err);
		return;
	}
	/* computed even when not wanted: it keeps the opened list current */
	changes = changes_json(s, c, from, to);
	o = ok_obj(r->id);
	json_object_set_new(o, "revision", json_integer((json_int_t)to));
	if (!want || json_is_true(want))
		json_object_set_new(o, "arrays", changes);
	else
		json_decref(changes);
	reply(s, c, o, -1);
}

static void op_abort(struct server *s, struct client *c, struct req *r)
{
	json_t *o = ok_obj(r->id);

	json_object_set_new(o, "revision", json_integer((json_int_t)c->snap));
	reply(s, c, o, -1);
}

/* Commit request -> struct cat_commit.  All allocations hang off *bufs
 * (freed by the caller).  On a problem: reply and return false. */
struct commit_bufs {
	struct cat_arrchange *arrs;
	struct cat_blkchange **blks; /* per array */
	struct cat_run **runs;	     /* per array: all its runs */
	size_t narr;
};

static void commit_bufs_free(struct commit_bufs *b)
{
	for (size_t i = 0; i < b->narr; i++) {
		free(b->blks ? b->blks[i] : NULL);
		free(b->runs ? b->runs[i] : NULL);
	}
	free(b->arrs);
	free(b->blks);
	free(b->runs);
}

static bool parse_commit(struct server *s, struct client *c, struct req *r,
			 struct cat_commit *cm, struct commit_bufs *b)
{
	json_t *arrs = json_object_get(r->j, "arrays"), *ja;
	uint64_t total_pages = 0;
	const char *why;
	size_t i;

	if (!json_is_array(arrs) || json_array_size(arrs) > s->cfg->max_arrays) {
		reply_error(s, c, r->id, -EINVAL, "\"arrays\" must be an array of at most %u "
			    "array changes", s->cfg->max_arrays);
		return false;
	}
	b->narr = json_array_size(arrs);
	b->arrs = calloc(b->narr + 1, sizeof(*b->arrs));
	b->blks = calloc(b->narr + 1, sizeof(*b->blks));
	b->runs = calloc(b->narr + 1, sizeof(*b->runs));
	if (!b->arrs || !b->blks || !b->runs)
		goto err_nomem;
	cm->narr = b->narr;
	cm->arrs = b->arrs;
	json_array_foreach(arrs, i, ja) {
		struct cat_arrchange *ac = &b->arrs[i];
		json_t *name = json_object_get(ja, "name"), *shape = json_object_get(ja, "shape");
		json_t *blocks = json_object_get(ja, "blocks"), *jb;
		size_t nruns = 0, k, j;

		if (!json_is_object(ja) || !json_is_string(name)) {
			reply_error(s, c, r->id, -EINVAL, "arrays[%zu]: an object with a string "
				    "\"name\" is expected", i);
			return false;
		}
		ac->name = json_string_value(name);
		if (json_object_get(ja, "create")) {
			json_t *cj = json_object_get(ja, "create"), *jbs, *jo;
			const char *dts = json_string_value(json_object_get(cj, "dtype"));
			uint64_t bs = s->cfg->block_size;

			jbs = json_object_get(cj, "block_size");
			jo = json_object_get(cj, "order");
			if (!json_is_object(cj) || !dts ||
			    dtype_parse(dts, &ac->cr.dtype, &why) ||
			    !parse_shape(json_object_get(cj, "shape"), &ac->cr.meta, &why) ||
			    (jbs && !json_u64(jbs, &bs)) ||
			    (jo && (!json_is_string(jo) || (strcmp(json_string_value(jo), "C") &&
							     strcmp(json_string_value(jo), "F"))))) {
				reply_error(s, c, r->id, -EINVAL, "arrays[%zu].create: an object with "
					    "\"dtype\", \"shape\" and optional \"order\" (\"C\" or "
					    "\"F\") and \"block_size\" is expected", i);
				return false;
			}
			ac->create = true;
			ac->cr.name = ac->name;
			ac->cr.order = jo ? json_string_value(jo)[0] : 'C';
			ac->cr.blksize = bs;
			if (shape) {
				reply_error(s, c, r->id, -EINVAL, "arrays[%zu]: \"create\" gives the "
					    "shape; \"shape\" goes with existing arrays", i);
				return false;
			}
		}
		if (shape) {
			ac->resize = true;
			if (!parse_shape(shape, &ac->meta, &why)) {
				reply_error(s, c, r->id, -EINVAL, "arrays[%zu]: %s", i, why);
				return false;
			}
		}
		if (blocks && !json_is_array(blocks)) {
			reply_error(s, c, r->id, -EINVAL, "arrays[%zu].blocks must be an array", i);
			return false;
		}
		ac->nblk = blocks ? json_array_size(blocks) : 0;
		/* count runs first: one allocation per array */
		json_array_foreach(blocks, k, jb) {
			json_t *runs = json_object_get(jb, "runs");

			if (!json_is_object(jb) || !json_is_array(runs)) {
				reply_error(s, c, r->id, -EINVAL, "arrays[%zu].blocks[%zu]: an object "
					    "with \"blk\", \"runs\" and \"data\" is expected", i, k);
				return false;
			}
			nruns += json_array_size(runs);
		}
		b->blks[i] = calloc(ac->nblk + 1, sizeof(*b->blks[i]));
		b->runs[i] = calloc(nruns + 1, sizeof(*b->runs[i]));
		if (!b->blks[i] || !b->runs[i])
			goto err_nomem;
		ac->blks = b->blks[i];
		nruns = 0;
		json_array_foreach(blocks, k, jb) {
			struct cat_blkchange *bc = &ac->blks[k];
			json_t *runs = json_object_get(jb, "runs"), *jr;

			if (!json_u64(json_object_get(jb, "blk"), &bc->blk) ||
			    !json_u64(json_object_get(jb, "data"), &bc->data_off)) {
				reply_error(s, c, r->id, -EINVAL, "arrays[%zu].blocks[%zu]: \"blk\" and "
					    "\"data\" must be non-negative integers", i, k);
				return false;
			}
			bc->runs = &b->runs[i][nruns];
			bc->nruns = json_array_size(runs);
			json_array_foreach(runs, j, jr) {
				uint64_t first, count;

				if (!json_is_array(jr) || json_array_size(jr) != 2 ||
				    !json_u64(json_array_get(jr, 0), &first) ||
				    !json_u64(json_array_get(jr, 1), &count) || first > UINT32_MAX ||
				    count > UINT32_MAX) {
					reply_error(s, c, r->id, -EINVAL, "arrays[%zu].blocks[%zu].runs[%zu]"
						    ": a [first, count] pair of page numbers is expected",
						    i, k, j);
					return false;
				}
				bc->runs[j] = (struct cat_run){ (uint32_t)first, (uint32_t)count };
				total_pages += count;
			}
			nruns += bc->nruns;
		}
	}
	if (total_pages > s->cfg->max_commit_bytes / PAGE_4K) {
		reply_error(s, c, r->id, -EMSGSIZE, "the commit changes %" PRIu64 " pages, more than "
			    "limits.commit_bytes allows (%" PRIu64 " bytes)", total_pages,
			    s->cfg->max_commit_bytes);
		return false;
	}
	return true;

err_nomem:
	reply_error(s, c, r->id, -ENOMEM, "out of memory");
	return false;
}

static void op_commit(struct server *s, struct client *c, struct req *r)
{
	struct cat_commit cm = { .base = c->snap, .data_fd = -1 };
	struct commit_bufs b = { 0 };
	struct cat_result res;
	struct cat_err err;
	struct pending *p;
	uint64_t base, from = c->snap;

	if (!may_write(s, c, r))
		return;
	base = c->snap;
	if (!get_u64(s, c, r, "base", false, &base) ||
	    !parse_commit(s, c, r, &cm, &b))
		goto out;
	if (base != c->snap) {
		reply_error(s, c, r->id, -EINVAL, "\"base\" %" PRIu64 " is not this connection's "
			    "snapshot (%" PRIu64 ")", base, c->snap);
		goto out;
	}
	if (r->msg->nfds > 1) {
		reply_error(s, c, r->id, SHMA_EPROTOCOL, "a commit carries at most one fd (its page "
			    "data)");
		goto out;
	}
	if (r->msg->nfds == 1)
		cm.data_fd = r->msg->fds[0];
	cm.max_arrays = s->cfg->max_arrays;
	catalog_batch_begin(s->cat);
	if (catalog_commit(s->cat, &cm, now_ms(), &res, &err)) {
		if (err.code == SHMA_ECONFLICT)
			log_info("client %" PRIu64 ": commit conflict: %s", c->serial, err.msg);
		reply_cat_error(s, c, r->id, &err);
		goto out;
	}
	p = pending_add(s, c, r, PEND_COMMIT, res.rev, NULL);
	if (p) {
		p->from = from;
		p->res = res;
		/* held until the client's snapshot moves there (finish_commit):
		 * later changes of the batch must not let retention drop it */
		p->pinned = catalog_pin(s->cat, res.rev, &err) == 0;
	} else {
		catalog_result_free(&res);
	}
out:
	commit_bufs_free(&b);
}

/* What a commit at rev did to one array, as an invalidation entry; NULL
 * without memory. */
static json_t *inval_entry(const struct cat_result_arr *ra, uint64_t rev)
{
	json_t *blocks = json_array(), *e;

	for (size_t k = 0; blocks && k < ra->n; k++)
		add_pair(ra->blks[k], ra->slots[k], blocks);
	e = json_pack("{s:I,s:o}", "id", (json_int_t)ra->array->id, "blocks", blocks);
	if (!e)
		return NULL;
	if ((ra->created && json_object_set_new(e, "created", json_true())) ||
	    /* a real shape change, or a new array */
	    ((ra->resized || ra->created) &&
	     json_object_set_new(e, "meta", meta_json(ra->array, catalog_meta_at(ra->array, rev))))) {
		json_decref(e);
		return NULL;
	}
	return e;
}

static void finish_commit(struct server *s, struct pending *p)
{
	struct cat_result *res = &p->res;
	struct client *c = p->c;
	struct cat_err err;
	json_t *o, *inv;

	/* the new revision is this client's snapshot now */
	if (!c->dead) {
		for (size_t i = 0; i < res->narr; i++)
			opened_add(c, res->arrs[i].array);
		if (move_snapshot(s, c, res->rev, &err))
			log_error("cannot pin revision %" PRIu64 ": %s", res->rev, err.msg);
		o = ok_obj(p->id);
		json_object_set_new(o, "revision", json_integer((json_int_t)res->rev));
		json_object_set_new(o, "arrays", changes_json(s, c, p->from, res->rev));
		reply(s, c, o, -1);
	}

	inv = json_object();
	for (size_t i = 0; inv && i < res->narr; i++) {
		json_t *e = inval_entry(&res->arrs[i], res->rev);

		if (!e || json_object_set_new(inv, res->arrs[i].array->name, e)) {
			json_decref(inv); /* no memory: published as a gap */
			inv = NULL;
		}
	}
	inval_add(s, res->rev, inv);
}

static void op_stats(struct server *s, struct client *c, struct req *r)
{
	struct cat_stats st;
	json_t *o;

	catalog_stats(s->cat, &st);
	o = ok_obj(r->id);
	json_object_set_new(o, "stats",
			    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
				      "pool_size", (json_int_t)st.pool_size, "pool_used",
				      (json_int_t)st.pool_used, "slots", (json_int_t)st.nslots,
				      "head", (json_int_t)st.head, "oldest_kept",
				      (json_int_t)st.oldest_kept, "revisions_kept",
				      (json_int_t)(st.head - st.oldest_kept + 1), "pins",
				      (json_int_t)st.npins, "arrays", (json_int_t)st.narrays,
				      "incarnations", (json_int_t)st.nincarnations, "versions",
				      (json_int_t)st.nversions, "clients", (json_int_t)s->nclients,
				      "commits", (json_int_t)st.commits, "conflicts",
				      (json_int_t)st.conflicts, "uptime_ms",
				      (json_int_t)(now_ms() - s->start_ms)));
	json_object_set_new(json_object_get(o, "stats"), "pool_spare",
			    json_integer((json_int_t)st.pool_spare));
	json_object_set_new(json_object_get(o, "stats"), "leases",
			    json_integer((json_int_t)s->nleases));
	reply(s, c, o, -1);
}

static const struct {
	const char *name;
	void (*fn)(struct server *s, struct client *c, struct req *r);
	bool fds_allowed;
} ops[] = {
	{ "hello", op_hello, false },	{ "create", op_create, false },
	{ "delete", op_delete, false }, { "open", op_open, false },
	{ "stat", op_stat, false },	{ "list", op_list, false },
	{ "sync", op_sync, false },	{ "abort", op_abort, false },
	{ "commit", op_commit, true },	{ "stats", op_stats, false },
	{ "unpin", op_unpin, false },	{ "lease", op_lease, false },
};

static void handle(struct server *s, struct client *c, struct proto_msg *msg)
{
	struct req r = { .msg = msg };
	json_error_t jerr;
	json_t *op;
	size_t i;

	/* the client has applied our last reply: its previous snapshot may go */
	if (c->has_old) {
		catalog_unpin(s->cat, c->oldsnap);
		c->has_old = false;
	}
	r.j = json_loadb(msg->text, msg->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!r.j) {
		reply_error(s, c, NULL, SHMA_EPROTOCOL, "the request is not valid JSON: %s at "
			    "column %d", jerr.text, jerr.column);
		return;
	}
	if (!json_is_object(r.j)) {
		reply_error(s, c, NULL, SHMA_EPROTOCOL, "a request must be a JSON object");
		goto out;
	}
	r.id = json_object_get(r.j, "id");
	op = json_object_get(r.j, "op");
	if (!json_is_string(op)) {
		reply_error(s, c, r.id, SHMA_EPROTOCOL, "a request needs a string \"op\"");
		goto out;
	}
	for (i = 0; i < ARRAY_SIZE(ops); i++)
		if (!strcmp(ops[i].name, json_string_value(op)))
			break;
	if (i == ARRAY_SIZE(ops)) {
		reply_error(s, c, r.id, SHMA_EPROTOCOL, "unknown request \"%.32s\"",
			    json_string_value(op));
		goto out;
	}
	if (!c->hello && ops[i].fn != op_hello) {
		reply_error(s, c, r.id, SHMA_EPROTOCOL, "the first request must be \"hello\"");
		goto out;
	}
	if (msg->nfds && !ops[i].fds_allowed) {
		reply_error(s, c, r.id, SHMA_EPROTOCOL, "\"%s\" carries no file descriptors",
			    ops[i].name);
		goto out;
	}
	/* a change joins the open batch; anything else, or a second change of
	 * the same client, sees only what is durable */
	if (catalog_batch_open(s->cat) &&
	    (c->npending || (ops[i].fn != op_commit && ops[i].fn != op_create &&
			     ops[i].fn != op_delete)))
		server_flush(s);
	log_debug("client %" PRIu64 ": %s", c->serial, ops[i].name);
	/* a change refused now may speak of an open batch: its reply waits */
	s->hold = catalog_batch_open(s->cat) && (ops[i].fn == op_commit ||
						 ops[i].fn == op_create || ops[i].fn == op_delete);
	ops[i].fn(s, c, &r);
	s->hold = false;
	catalog_gc(s->cat, now_ms());
out:
	json_decref(r.j);
}

/* ---- clients ------------------------------------------------------------- */

/* Disconnect c: its snapshot pins go, its fd closes.  The record itself is
 * freed by reap(), so callers up the stack may still look at c->dead. */
static void client_close(struct server *s, struct client *c)
{
	if (c->dead)
		return;
	c->dead = true;
	while (c->outq) {
		struct outmsg *m = c->outq;

		c->outq = m->next;
		outmsg_free(m);
	}
	c->outtail = &c->outq;
	if (c->hello && c->snap_pinned)
		catalog_unpin(s->cat, c->snap);
	if (c->has_old)
		catalog_unpin(s->cat, c->oldsnap);
	for (size_t i = 0; i < c->npins; i++)
		catalog_unpin(s->cat, c->pins[i]);
	c->npins = 0;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	util_close(c->fd);
	c->fd = -1;
	list_del_init(&c->link);
	list_add_tail(&c->link, &s->dead);
	s->nclients--;
	log_debug("client %" PRIu64 " gone", c->serial);
	catalog_gc(s->cat, now_ms());
}

static void reap(struct server *s)
{
	while (!list_empty(&s->dead)) {
		struct client *c = container_of(s->dead.next, struct client, link);

		list_del_init(&c->link);
		free(c->opened);
		free(c->pins);
		free(c);
	}
}

/* Refuse a connection with one error message, without a client record. */
static void refuse(int fd, int code, const char *msg)
{
	json_t *o = error_obj(code, msg);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	if (text)
		(void)proto_send_raw(fd, text, strlen(text), NULL, 0, MSG_DONTWAIT);
	free(text);
	json_decref(o);
	util_close(fd);
}

static void add_client(struct server *s, int fd);

static void on_accept(struct server *s)
{
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR)
			log_warn("accept: %s", strerror(errno));
		return;
	}
	add_client(s, fd);
}

int server_connect_fd(struct server *s, int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	add_client(s, fd);
	return 0;
}

/* A new connection on fd (non-blocking; consumed): check the peer's
 * credentials, then serve it, or refuse it with an error reply. */
static void add_client(struct server *s, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t gids[MAX_GROUPS + 1]; /* the primary group, then up to MAX_GROUPS more */
	socklen_t glen = sizeof(gids) - sizeof(gid_t);
	size_t ngids = 0;
	enum access acc;
	struct client *c;
	char msg[256];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("SO_PEERCRED: %s", strerror(errno));
		util_close(fd);
		return;
	}
	gids[ngids++] = cred.gid;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids + 1, &glen) == 0) {
		ngids += glen / sizeof(gid_t);
	} else if (errno == ERANGE && glen > 0 && glen < (1u << 20)) {
		/* more groups than the stack buffer: fetch them all */
		gid_t *all = malloc(glen);

		if (all && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, all, &glen) == 0) {
			size_t n = glen / sizeof(gid_t);

			acc = config_access(s->cfg, cred.uid, all, n, geteuid());
			if (acc == ACCESS_NONE)
				acc = config_access(s->cfg, cred.uid, &cred.gid, 1, geteuid());
			free(all);
			goto decided;
		}
		free(all);
	}
	acc = config_access(s->cfg, cred.uid, gids, ngids, geteuid());
decided:
	if (acc == ACCESS_NONE) {
		log_warn("refused pid %d uid %u: not allowed by the access configuration",
			 (int)cred.pid, (unsigned)cred.uid);
		snprintf(msg, sizeof(msg), "uid %u may not connect to this broker (access "
			 "configuration)", (unsigned)cred.uid);
		refuse(fd, -EACCES, msg);
		return;
	}
	if (s->nclients >= s->cfg->max_clients) {
		log_warn("refused pid %d: too many clients (%u)", (int)cred.pid,
			 s->cfg->max_clients);
		snprintf(msg, sizeof(msg), "too many clients (limit %u)", s->cfg->max_clients);
		refuse(fd, -EUSERS, msg);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		refuse(fd, -ENOMEM, "out of memory");
		return;
	}
	c->fd = fd;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->access = acc;
	c->serial = ++s->serial;
	c->outtail = &c->outq;
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c);
			refuse(fd, -errno, "internal error");
			return;
		}
	}
	list_add_tail(&c->link, &s->clients);
	s->nclients++;
	log_debug("client %" PRIu64 ": pid %d uid %u (%s)", c->serial, (int)c->pid,
		  (unsigned)c->uid, acc == ACCESS_RW ? "rw" : "ro");
}

static void on_client(struct server *s, struct client *c, uint32_t events)
{
	/* a few requests per wakeup, then let others in */
	for (int n = 0; n < 16 && !(events & EPOLLERR); n++) {
		struct proto_msg msg;
		int r;

		if (c->dead)
			return;
		if (c->closing) { /* nothing more is read; a hang-up ends it */
			if (events & (EPOLLHUP | EPOLLERR))
				client_close(s, c);
			else if (events & EPOLLOUT)
				client_flush(s, c);
			return;
		}
		r = proto_recv_buf(c->fd, &s->rbuf, s->cfg->max_message, MAX_BIG_MESSAGE, &msg);
		if (r == -EAGAIN)
			break;
		if (r == 1 || (r < 0 && r != -EMSGSIZE && r != SHMA_EPROTOCOL)) {
			client_close(s, c);
			return;
		}
		if (r == -EMSGSIZE) {
			reply_error(s, c, NULL, -EMSGSIZE, "message longer than %u bytes: send it "
				    "in a memfd ({\"big\":N}, see PROTOCOL.md)", s->cfg->max_message);
			continue;
		}
		if (r == SHMA_EPROTOCOL) {
			reply_error(s, c, NULL, SHMA_EPROTOCOL, "malformed message (bad envelope, "
				    "too many file descriptors, or a NUL in the text)");
			continue;
		}
		handle(s, c, &msg);
		proto_msg_free(&msg);
		if (c->dead)
			return;
	}
	if (events & (EPOLLHUP | EPOLLERR)) {
		client_close(s, c);
		return;
	}
	if (events & EPOLLOUT)
		client_flush(s, c);
}

/* ---- setup --------------------------------------------------------------- */

/* Create dir (and parents) with mode 0700 if missing; refuse a directory we
 * do not own or others can write. */
static int make_runtime_dir(const char *dir, char *errbuf, size_t errlen)
{
	char path[PATH_MAX];
	struct stat sb;
	size_t len = strlen(dir);

	if (len >= sizeof(path)) {
		snprintf(errbuf, errlen, "runtime directory path too long");
		return -ENAMETOOLONG;
	}
	memcpy(path, dir, len + 1);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0755) < 0 && errno != EEXIST) {
			snprintf(errbuf, errlen, "cannot create %s: %s", path, strerror(errno));
			return -errno;
		}
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(errbuf, errlen, "cannot create runtime directory %s: %s", path,
			 strerror(errno));
		return -errno;
	}
	if (stat(path, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		snprintf(errbuf, errlen, "runtime directory %s is not a directory", path);
		return -ENOTDIR;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 0022)) {
		snprintf(errbuf, errlen, "runtime directory %s must belong to uid %u and not be "
			 "writable by group or others", path, (unsigned)geteuid());
		return -EPERM;
	}
	return 0;
}

static int listen_socket(struct server *s, char *errbuf, size_t errlen)
{
	const struct broker_config *cfg = s->cfg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(cfg->socket_path) >= sizeof(sa.sun_path)) {
		snprintf(errbuf, errlen, "socket path too long: %s", cfg->socket_path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, cfg->socket_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(errbuf, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int probe;

		if (errno != EADDRINUSE)
			goto err_bind;
		/* a live broker answers; a stale file from a dead one does not */
		probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			util_close(probe);
			snprintf(errbuf, errlen, "another broker is listening on %s",
				 cfg->socket_path);
			err = -EADDRINUSE;
			goto err_close;
		}
		util_close(probe);
		if (unlink(cfg->socket_path) < 0 ||
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			goto err_bind;
	}
	s->socket_bound = true;
	if (chmod(cfg->socket_path, cfg->socket_mode) < 0 ||
	    (cfg->socket_gid >= 0 && chown(cfg->socket_path, (uid_t)-1, (gid_t)cfg->socket_gid) < 0)) {
		snprintf(errbuf, errlen, "cannot set mode/group of %s: %s", cfg->socket_path,
			 strerror(errno));
		err = -errno;
		goto err_close;
	}
	s->lfd = fd; /* listen() comes last in server_new: ready means ready */
	return 0;

err_bind:
	snprintf(errbuf, errlen, "cannot bind %s: %s", cfg->socket_path, strerror(errno));
	err = -errno;
err_close:
	util_close(fd);
	return err;
}

static void make_store_id(char *out)
{
	unsigned char b[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (fd < 0 || read(fd, b, sizeof(b)) != (ssize_t)sizeof(b)) {
		/* no urandom: time and pid still tell stores apart */
		uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;

		memcpy(b, &x, 8);
		x ^= (uint64_t)getpid() << 32;
		memcpy(b + 8, &x, 8);
	}
	util_close(fd);
	for (int i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

int server_new(const struct broker_config *cfg, struct server **out, char *errbuf,
	       size_t errlen)
{
	struct cat_retention ret = { cfg->keep_revisions, cfg->keep_ms };
	struct itimerspec its = {
		.it_interval = { GC_INTERVAL_MS / 1000, (GC_INTERVAL_MS % 1000) * 1000000L },
		.it_value = { GC_INTERVAL_MS / 1000, (GC_INTERVAL_MS % 1000) * 1000000L },
	};
	struct epoll_event ev;
	struct server *s;
	sigset_t sigs;
	int err;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = cfg;
	s->epfd = s->lfd = s->sigfd = s->timerfd = -1;
	list_init(&s->clients);
	list_init(&s->dead);
	s->start_ms = now_ms();
	make_store_id(s->store_id);
	signal(SIGPIPE, SIG_IGN);

	s->store = &store_memory;
	s->pend_tail = &s->pend;
	err = make_runtime_dir(cfg->runtime_dir, errbuf, errlen);
	if (err)
		goto err_free;
	err = pool_init(&s->pool, cfg->pool_size);
	if (err) {
		snprintf(errbuf, errlen, "cannot create the page pool (%" PRIu64 " bytes): %s",
			 cfg->pool_size, strerror(-err));
		goto err_free;
	}
	s->pool_ok = true;
	/* the socket first: it tells whether another broker runs on this
	 * configuration, before the store and the publisher are taken */
	err = listen_socket(s, errbuf, errlen);
	if (err)
		goto err_free;
	if (cfg->data_dir) {
		struct store_lmdb_opts so = { .dir = cfg->data_dir, .max_size = cfg->store_size,
					      .async = cfg->durability_async };

		err = store_lmdb_open(&so, s->store_id, &s->store, errbuf, errlen);
		if (err) {
			s->store = &store_memory;
			goto err_free;
		}
		snprintf(s->store_id, sizeof(s->store_id), "%s", store_lmdb_id(s->store));
	}
	err = catalog_new(&s->pool, s->store, &ret, now_ms(), &s->cat);
	if (err) {
		snprintf(errbuf, errlen, "out of memory");
		goto err_free;
	}
	if (cfg->data_dir) {
		err = store_lmdb_restore(s->store, s->cat, &s->pool, errbuf, errlen);
		if (err)
			goto err_free;
	}
	err = pub_new(cfg->publish, &s->pub, errbuf, errlen);
	if (err)
		goto err_free;
	s->inv_merged = json_object();
	if (!s->inv_merged) {
		err = -ENOMEM;
		snprintf(errbuf, errlen, "out of memory");
		goto err_free;
	}

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	s->sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	s->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->sigfd < 0 || s->timerfd < 0 || s->epfd < 0 ||
	    timerfd_settime(s->timerfd, 0, &its, NULL) < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "cannot set up the event loop: %s", strerror(errno));
		goto err_free;
	}
	/* clients may come from here on: everything they need is up */
	if (listen(s->lfd, 128) < 0) {
		err = -errno;
		snprintf(errbuf, errlen, "listen: %s", strerror(errno));
		goto err_free;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &s->lfd };
	err = epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev);
	ev.data.ptr = &s->sigfd;
	err = err ? err : epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sigfd, &ev);
	ev.data.ptr = &s->timerfd;
	err = err ? err : epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timerfd, &ev);
	if (err) {
		err = -errno;
		snprintf(errbuf, errlen, "epoll_ctl: %s", strerror(errno));
		goto err_free;
	}
	*out = s;
	return 0;

err_free:
	server_free(&s);
	return err;
}

/* Wait up to timeout_ms for events and handle them: the number handled, or
 * -errno on a fatal error. */
static int step_events(struct server *s, int timeout_ms)
{
	struct epoll_event evs[64];
	int n = epoll_wait(s->epfd, evs, (int)ARRAY_SIZE(evs), timeout_ms);

	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0) {
		log_error("epoll_wait: %s", strerror(errno));
		return -errno;
	}
	for (int i = 0; i < n; i++) {
		void *p = evs[i].data.ptr;

		if (p == &s->lfd) {
			on_accept(s);
		} else if (p == &s->sigfd) {
			struct signalfd_siginfo si;

			if (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				log_info("signal %u: stopping", si.ssi_signo);
				s->stop = true; /* after this batch is made durable */
			}
		} else if (p == &s->timerfd) {
			uint64_t ticks;

			if (read(s->timerfd, &ticks, sizeof(ticks)) > 0) {
				server_flush(s);
				expire_leases(s);
				catalog_gc(s->cat, now_ms());
				if (s->store->ops->tick)
					s->store->ops->tick(s->store);
			}
		} else if (!((struct client *)p)->dead) {
			on_client(s, p, evs[i].events);
		}
	}
	return n;
}

int server_step(struct server *s, int timeout_ms)
{
	int n = step_events(s, timeout_ms);

	/* Before a batch pays for its sync, take in what arrived meanwhile:
	 * requests sent while the batch was handled join it (a few rounds at
	 * most, so that steady arrivals cannot hold its replies back). */
	for (int k = 0; k < GATHER_ROUNDS && n > 0 && !s->stop && catalog_batch_open(s->cat); k++)
		n = step_events(s, 0);
	if (n < 0)
		return n;
	server_flush(s);
	reap(s);
	return s->stop ? 1 : 0;
}

int server_run(struct server *s)
{
	int r;

	log_info("listening on %s (%s), publishing on %s, pool %" PRIu64 " MiB, store %s (%s)",
		 s->cfg->socket_path, "SOCK_SEQPACKET", s->cfg->publish, s->pool.size >> 20,
		 s->store_id, s->cfg->data_dir ? s->cfg->data_dir : "in memory only");
	while ((r = server_step(s, -1)) == 0)
		;
	return r < 0 ? r : 0;
}

void server_free(struct server **sp)
{
	struct server *s = *sp;

	if (!s)
		return;
	if (s->cat)
		server_flush(s); /* a batch still open is acknowledged or undone */
	while (!list_empty(&s->clients))
		client_close(s, container_of(s->clients.next, struct client, link));
	reap(s);
	if (s->socket_bound)
		unlink(s->cfg->socket_path);
	util_close(s->lfd);
	util_close(s->sigfd);
	util_close(s->timerfd);
	util_close(s->epfd);
	pub_free(&s->pub);
	json_decref(s->inv); /* published by server_flush: NULL here */
	json_decref(s->inv_merged);
	proto_rbuf_free(&s->rbuf);
	free(s->leases);
	catalog_free(&s->cat);
	if (s->store && s->store->ops->close)
		s->store->ops->close(s->store);
	if (s->pool_ok)
		pool_fini(&s->pool);
	free(s);
	*sp = NULL;
}
