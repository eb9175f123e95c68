/* conn.c - the broker connection: requests, invalidations, transactions
 * (the contract is in shma.h; the protocol in docs/PROTOCOL.md).
 */
#include "conn_int.h"
#include "dtype.h"
#include "names.h"
#include "proto.h"
#include "virtmem.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#define DEFAULT_RAM ((size_t)256 << 20)
#define DATA_KEEP ((uint64_t)64 << 20) /* page data kept between commits */
#define MAX_REPLY ((size_t)256 << 20)
#define INV_TOPIC "shma.inv"
/* Stream messages a connection holds while nobody syncs or polls.  A held
 * message keeps ZeroMQ's receive buffer (8 KiB) alive, so a connection that
 * only commits, or sleeps, would otherwise grow by 8 KiB for every batch of
 * anybody's changes.  Past this many, ZeroMQ stops reading and the broker
 * drops this subscriber's messages: the next shma_sync asks the broker for
 * the changes instead (a resync). */
#define INV_BACKLOG 1000

int conn_error(struct shma_conn *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return code;
}

bool conn_forked(const struct shma_conn *c)
{
	return getpid() != c->pid;
}

void conn_debug_drop_invalidations(struct shma_conn *c, unsigned n)
{
	pthread_mutex_lock(&c->lock);
	c->drop_next = n;
	pthread_mutex_unlock(&c->lock);
}

static int code_of(const char *name)
{
	static const struct {
		const char *name;
		int code;
	} map[] = {
		{ "conflict", SHMA_ECONFLICT }, { "not_kept", SHMA_ENOTKEPT },
		{ "protocol", SHMA_EPROTOCOL }, { "not_found", -ENOENT },
		{ "exists", -EEXIST },		{ "no_space", -ENOSPC },
		{ "denied", -EACCES },		{ "read_only", -EROFS },
		{ "too_large", -EMSGSIZE },	{ "limit", -EUSERS },
		{ "invalid", -EINVAL },		{ "io", -EIO },
	};

	for (size_t i = 0; name && i < ARRAY_SIZE(map); i++)
		if (!strcmp(map[i].name, name))
			return map[i].code;
	return SHMA_EREFUSED;
}

static void lose(struct shma_conn *c)
{
	if (c->fd >= 0) {
		util_close(c->fd);
		c->fd = -1;
	}
}

int conn_call(struct shma_conn *c, json_t *req, const int *fds, int nfds, json_t **reply,
	      int *rfds, int *nrfds)
{
	char *text = json_dumps(req, JSON_COMPACT);
	struct proto_msg m;
	json_error_t jerr;
	json_t *r, *e;
	int err;

	json_decref(req);
	*reply = NULL;
	if (nrfds)
		*nrfds = 0;
	if (!text)
		return conn_error(c, -ENOMEM, "out of memory");
	if (c->fd < 0) {
		free(text);
		return conn_error(c, SHMA_EDISCONNECTED, "not connected to the broker at %s",
				  c->path);
	}
	/* replies to requests sent earlier without waiting come first */
	while (c->unread) {
		err = proto_recv_buf(c->fd, &c->rbuf, c->max_message, MAX_REPLY, &m);
		if (err) {
			free(text);
			lose(c);
			return conn_error(c, SHMA_EDISCONNECTED, "the broker at %s is gone", c->path);
		}
		proto_msg_free(&m);
		c->unread--;
	}
	err = proto_send(c->fd, text, strlen(text), c->max_message, fds, nfds);
	free(text);
	if (err && err != -EPIPE && err != -ECONNRESET) {
		lose(c);
		return conn_error(c, SHMA_EDISCONNECTED, "the broker at %s is gone (%s)", c->path,
				  strerror(-err));
	}
	/* A broker that refuses a connection answers and closes at once: the
	 * send may fail (EPIPE) or the receive see the reset first, while its
	 * answer still waits in the socket.  Read it if it is there. */
	if (err) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

		if (poll(&pfd, 1, 100) <= 0 || !(pfd.revents & POLLIN)) {
			lose(c);
			return conn_error(c, SHMA_EDISCONNECTED, "the broker at %s is gone (%s)",
					  c->path, strerror(-err));
		}
	}
	err = proto_recv_buf(c->fd, &c->rbuf, c->max_message, MAX_REPLY, &m);
	if (err == -ECONNRESET)
		err = proto_recv_buf(c->fd, &c->rbuf, c->max_message, MAX_REPLY, &m);
	if (err) {
		lose(c);
		return conn_error(c, SHMA_EDISCONNECTED, "the broker at %s is gone (%s)", c->path,
				  err == 1 ? "connection closed" : shma_strerror(err));
	}
	r = json_loadb(m.text, m.len, 0, &jerr);
	if (!r || !json_is_object(r)) {
		json_decref(r);
		proto_msg_free(&m);
		lose(c);
		return conn_error(c, SHMA_EPROTOCOL, "the broker sent a malformed reply");
	}
	if (rfds && nrfds)
		while (m.nfds)
			rfds[(*nrfds)++] = proto_msg_take_fd(&m, 0);
	proto_msg_free(&m);
	if (!json_is_true(json_object_get(r, "ok"))) {
		const char *msg;

		e = json_object_get(r, "error");
		msg = json_string_value(json_object_get(e, "message"));
		err = conn_error(c, code_of(json_string_value(json_object_get(e, "code"))), "%s",
				 msg ? msg : "the broker refused the request");
		/* a conflict's blocks, so the message names them */
		if (json_is_array(json_object_get(e, "blocks"))) {
			size_t i, len = strlen(c->err);
			json_t *b;

			json_array_foreach(json_object_get(e, "blocks"), i, b) {
				if (len + 32 >= sizeof(c->err))
					break;
				len += (size_t)snprintf(c->err + len, sizeof(c->err) - len, "%s%" PRIu64,
							i ? ", " : ": block(s) ",
							(uint64_t)json_integer_value(b));
			}
		}
		json_decref(r);
		return err;
	}
	*reply = r;
	return 0;
}

int conn_send_later(struct shma_conn *c, json_t *req)
{
	char *text = json_dumps(req, JSON_COMPACT);
	int err;

	json_decref(req);
	if (!text)
		return -ENOMEM;
	if (c->fd < 0) {
		free(text);
		return SHMA_EDISCONNECTED;
	}
	err = proto_send(c->fd, text, strlen(text), c->max_message, NULL, 0);
	free(text);
	if (err) {
		lose(c);
		return SHMA_EDISCONNECTED;
	}
	c->unread++;
	return 0;
}

/* ---- invalidations ------------------------------------------------------- */

static void sub_close(struct shma_conn *c)
{
	if (c->zsub)
		zmq_close(c->zsub);
	if (c->zctx)
		zmq_ctx_term(c->zctx);
	c->zsub = c->zctx = NULL;
}

static int sub_open(struct shma_conn *c)
{
	int linger = 0, hwm = INV_BACKLOG;

	if (c->opts.no_invalidations || !c->publish)
		return 0;
	c->zctx = zmq_ctx_new();
	if (!c->zctx)
		return conn_error(c, -ENOMEM, "cannot create a ZeroMQ context");
	c->zsub = zmq_socket(c->zctx, ZMQ_SUB);
	if (!c->zsub || zmq_setsockopt(c->zsub, ZMQ_LINGER, &linger, sizeof(linger)) ||
	    zmq_setsockopt(c->zsub, ZMQ_RCVHWM, &hwm, sizeof(hwm)) ||
	    zmq_setsockopt(c->zsub, ZMQ_SUBSCRIBE, INV_TOPIC, strlen(INV_TOPIC)) ||
	    zmq_connect(c->zsub, c->publish)) {
		int e = zmq_errno();

		sub_close(c);
		return conn_error(c, -e, "cannot subscribe to invalidations at %s: %s",
				  c->publish, zmq_strerror(e));
	}
	return 0;
}

/* Read every invalidation waiting; keep those newer than the snapshot.  A
 * drain that finds the backlog (nearly) full notes that messages after it
 * may have been dropped: what it heard of then need not be the newest. */
static void sub_drain(struct shma_conn *c)
{
	char topic[32];
	size_t nread = 0;

	if (!c->zsub)
		return;
	for (;; nread++) {
		zmq_msg_t msg;
		json_error_t jerr;
		json_t *j;
		int more = 0;
		size_t ml = sizeof(more);
		int n = zmq_recv(c->zsub, topic, sizeof(topic), ZMQ_DONTWAIT);

		if (n < 0)
			break;
		zmq_getsockopt(c->zsub, ZMQ_RCVMORE, &more, &ml);
		if (!more)
			continue; /* not ours: a lone frame */
		zmq_msg_init(&msg);
		if (zmq_msg_recv(&msg, c->zsub, 0) < 0) {
			zmq_msg_close(&msg);
			break;
		}
		j = json_loadb(zmq_msg_data(&msg), zmq_msg_size(&msg), 0, &jerr);
		zmq_msg_close(&msg);
		if (c->drop_next) {
			c->drop_next--;
			json_decref(j);
			continue;
		}
		if (!j || strcmp(json_string_value(json_object_get(j, "store")) ?: "", c->store) ||
		    (uint64_t)json_integer_value(json_object_get(j, "revision")) <= c->snap) {
			json_decref(j);
			continue;
		}
		if ((uint64_t)json_integer_value(json_object_get(j, "revision")) > c->heard)
			c->heard = (uint64_t)json_integer_value(json_object_get(j, "revision"));
		json_array_append_new(c->pending, j);
	}
	if (nread >= INV_BACKLOG / 2) /* half: ZeroMQ's count is per pipe, not exact */
		c->inv_overflow = true;
}

/* Drop queued invalidations the snapshot has reached. */
static void pending_trim(struct shma_conn *c)
{
	size_t i = 0;

	while (i < json_array_size(c->pending)) {
		json_t *j = json_array_get(c->pending, i);

		if ((uint64_t)json_integer_value(json_object_get(j, "revision")) <= c->snap)
			json_array_remove(c->pending, i);
		else
			i++;
	}
}

/* Do the queued invalidations cover (snap, to] without a gap?  Then they
 * say everything a sync to `to` changes.  A message covers (prev,
 * revision]: one batch of the broker's changes.  One that began before the
 * snapshot (a batch this connection's own commit was part of) does not
 * count: its entries may name blocks the snapshot already has, which would
 * doom uncommitted changes to them; the broker's changes do then. */
static bool pending_complete(struct shma_conn *c, uint64_t to)
{
	uint64_t at = c->snap;
	size_t i;
	json_t *j;

	json_array_foreach(c->pending, i, j) {
		uint64_t r = (uint64_t)json_integer_value(json_object_get(j, "revision"));
		json_t *prev = json_object_get(j, "prev");

		if (r > to)
			break;
		if (!json_is_integer(prev) || (uint64_t)json_integer_value(prev) != at ||
		    json_is_true(json_object_get(j, "truncated")))
			return false;
		/* a change to an array we hold under another incarnation cannot be
		 * applied from here */
		json_t *arrs = json_object_get(j, "arrays"), *e;
		const char *name;

		json_object_foreach(arrs, name, e) {
			struct shma_array *a = array_find(c, name);
			json_t *id = json_object_get(e, "id");

			if (a && id && (uint64_t)json_integer_value(id) != a->id)
				return false;
		}
		at = r;
	}
	return at == to;
}

/* ---- connect ------------------------------------------------------------- */

/* The message of the last failed call that had no connection of the
 * caller's to keep it (shma_connect, shma_ref_open), per thread. */
static __thread char last_err[512];

const char *shma_last_error(void)
{
	return last_err;
}

void conn_set_last_error(const char *msg)
{
	snprintf(last_err, sizeof(last_err), "%s", msg);
}

/* socket_path as an absolute path (refs carry it to other processes). */
static char *absolute_path(const char *path)
{
	char cwd[4096], *p = NULL;

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&p, "%s/%s", cwd, path) < 0)
		return NULL;
	return p;
}

static char *default_socket(void)
{
	const char *env = getenv("SHMA_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
	char *p = NULL;

	if (env && *env)
		return absolute_path(env);
	if (xdg && xdg[0] == '/') {
		if (asprintf(&p, "%s/shma/broker.sock", xdg) < 0)
			return NULL;
		return p;
	}
	if (asprintf(&p, "/tmp/shma-%u/broker.sock", (unsigned)geteuid()) < 0)
		return NULL;
	return p;
}

/* Connect the socket and say hello; fills the connection's broker fields. */
static int hello(struct shma_conn *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rfds[PROTO_MAX_FDS], nrfds = 0, err;
	json_t *r;
	const char *store, *pub, *acc;

	if (strlen(c->path) >= sizeof(sa.sun_path))
		return conn_error(c, -ENAMETOOLONG, "socket path too long: %s", c->path);
	strcpy(sa.sun_path, c->path);
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return conn_error(c, -errno, "socket: %s", strerror(errno));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		lose(c);
		return conn_error(c, err == -ENOENT || err == -ECONNREFUSED ? SHMA_EDISCONNECTED : err,
				  "no broker at %s (%s): start shma-broker, or set SHMA_SOCKET",
				  c->path, strerror(-err));
	}
	c->max_message = PROTO_MIN_INLINE;
	c->unread = 0;
	err = conn_call(c, json_pack("{s:s,s:i,s:b}", "op", "hello", "version", PROTO_VERSION,
				     "pin", c->snapshot),
			NULL, 0, &r, rfds, &nrfds);
	if (err) {
		lose(c);
		return err;
	}
	store = json_string_value(json_object_get(r, "store"));
	pub = json_string_value(json_object_get(r, "publish"));
	acc = json_string_value(json_object_get(r, "access"));
	if (nrfds != 1 || !store || !pub || !acc) {
		for (int i = 0; i < nrfds; i++)
			util_close(rfds[i]);
		json_decref(r);
		lose(c);
		return conn_error(c, SHMA_EPROTOCOL, "the broker's hello reply is incomplete");
	}
	if (c->pool_fd >= 0)
		util_close(c->pool_fd);
	c->pool_fd = rfds[0];
	c->pool_size = (uint64_t)json_integer_value(json_object_get(r, "pool_size"));
	c->max_message = (size_t)json_integer_value(json_object_get(r, "max_message"));
	c->default_blksize = (size_t)json_integer_value(json_object_get(r, "block_size"));
	c->snap = c->heard = (uint64_t)json_integer_value(json_object_get(r, "revision"));
	snprintf(c->store, sizeof(c->store), "%s", store);
	free(c->publish);
	c->publish = strdup(pub);
	c->writable = !strcmp(acc, "rw");
	json_decref(r);
	if (c->max_message < PROTO_MIN_INLINE)
		c->max_message = PROTO_MIN_INLINE;
	return 0;
}

int shma_connect(const char *socket_path, const struct shma_conn_options *opts,
		 shma_conn **out)
{
	return conn_connect(socket_path, opts, true, out);
}

int conn_connect(const char *socket_path, const struct shma_conn_options *opts, bool snapshot,
		 shma_conn **out)
{
	struct shma_conn *c = calloc(1, sizeof(*c));
	int err;

	if (!c)
		return -ENOMEM;
	c->snapshot = snapshot;
	pthread_mutex_init(&c->lock, NULL);
	c->pid = getpid();
	c->fd = c->pool_fd = c->data_fd = -1;
	list_init(&c->arrays);
	list_init(&c->refs);
	if (opts)
		c->opts = *opts;
	c->path = socket_path ? absolute_path(socket_path) : default_socket();
	c->pending = json_array();
	if (!c->path || !c->pending) {
		err = -ENOMEM;
		goto err_free;
	}
	err = shma_ram_new(c->opts.ram_limit ? c->opts.ram_limit : DEFAULT_RAM, &c->ram);
	if (err)
		goto err_free;
	if (c->opts.max_pages)
		shma_ram_set_max_pages(c->ram, c->opts.max_pages);
	err = hello(c);
	if (err)
		goto err_free;
	err = sub_open(c);
	if (err)
		goto err_free;
	*out = c;
	last_err[0] = 0;
	return 0;

err_free:
	conn_set_last_error(c->err[0] ? c->err : shma_strerror(err));
	shma_disconnect(&c);
	return err;
}

void shma_disconnect(shma_conn **cp)
{
	struct shma_conn *c = *cp;

	if (!c)
		return;
	while (!list_empty(&c->arrays))
		array_free(container_of(c->arrays.next, struct shma_array, link));
	while (!list_empty(&c->refs))
		array_free(container_of(c->refs.next, struct shma_array, link));
	/* in a child after fork these are the child's own copies: closing them
	 * says nothing to the broker on the parent's behalf */
	if (!conn_forked(c))
		sub_close(c);
	lose(c);
	util_close(c->pool_fd);
	util_close(c->data_fd);
	shma_ram_destroy(&c->ram);
	proto_rbuf_free(&c->rbuf);
	json_decref(c->pending);
	free(c->path);
	free(c->publish);
	pthread_mutex_destroy(&c->lock);
	free(c);
	*cp = NULL;
}

int conn_enter(struct shma_conn *c)
{
	if (conn_forked(c))
		return SHMA_EFORKED;
	pthread_mutex_lock(&c->lock);
	c->err[0] = 0;
	return 0;
}

int conn_leave(struct shma_conn *c, int err)
{
	if (err && !c->err[0])
		conn_error(c, err, "%s", shma_strerror(err));
	pthread_mutex_unlock(&c->lock);
	return err;
}

int shma_reconnect(shma_conn *c)
{
	struct list_head *it;
	int err = conn_enter(c);

	if (err)
		return err;
	lose(c);
	sub_close(c);
	json_array_clear(c->pending);
	err = hello(c);
	if (!err)
		err = sub_open(c);
	if (err)
		return conn_leave(c, err);
	/* every array starts over at the new snapshot */
	for (it = c->arrays.next; it != &c->arrays; it = it->next) {
		struct shma_array *a = container_of(it, struct shma_array, link);
		json_t *r, *e;

		array_reset(a);
		err = conn_call(c, json_pack("{s:s,s:s}", "op", "open", "name", a->name), NULL, 0,
				&r, NULL, NULL);
		if (err == -ENOENT) {
			array_apply(a, e = json_pack("{s:b}", "deleted", 1));
			json_decref(e);
			continue;
		}
		if (err)
			return conn_leave(c, err);
		e = json_pack("{s:b,s:O,s:O}", "recreated", 1, "meta", json_object_get(r, "meta"),
			      "blocks", json_object_get(r, "blocks"));
		err = array_apply(a, e);
		json_decref(e);
		json_decref(r);
		if (err)
			return conn_leave(c, err);
	}
	return conn_leave(c, 0);
}

uint64_t shma_revision(shma_conn *c)
{
	uint64_t r;

	pthread_mutex_lock(&c->lock);
	r = c->snap;
	pthread_mutex_unlock(&c->lock);
	return r;
}

bool shma_writable(shma_conn *c)
{
	return c->writable;
}

const char *shma_conn_error(shma_conn *c)
{
	return c->err;
}

/* The stream dropped messages: learn the broker's newest revision from it. */
static int ask_head(struct shma_conn *c)
{
	struct shma_broker_stats st;
	int err = conn_broker_stats(c, &st);

	if (err)
		return err;
	if (st.head > c->heard)
		c->heard = st.head;
	c->inv_overflow = false; /* heard is the newest again */
	return 0;
}

int shma_poll(shma_conn *c, uint64_t *newest)
{
	int err = conn_enter(c);

	if (err)
		return err;
	sub_drain(c);
	if (c->inv_overflow && c->fd >= 0)
		err = ask_head(c);
	*newest = c->heard > c->snap ? c->heard : c->snap;
	return conn_leave(c, err ? err : c->fd < 0 ? SHMA_EDISCONNECTED : 0);
}

void shma_conn_stats(shma_conn *c, struct shma_conn_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->st;
	pthread_mutex_unlock(&c->lock);
}

/* ---- create / delete ----------------------------------------------------- */

/* A change this connection made is a revision it has heard of: its next
 * shma_sync goes at least that far. */
static void note_change(struct shma_conn *c, json_t *reply, uint64_t *rev)
{
	uint64_t r = (uint64_t)json_integer_value(json_object_get(reply, "revision"));

	if (r > c->heard)
		c->heard = r;
	if (rev)
		*rev = r;
}

int shma_create(shma_conn *c, const char *name, const char *dtype, unsigned ndim,
		const uint64_t *shape, char order, size_t block_size, uint64_t *rev)
{
	json_t *req, *jshape, *r;
	char ord[2] = { order, 0 };
	int err = conn_enter(c);

	if (err)
		return err;
	if (!name || !dtype || ndim > CONN_MAXDIM || (ndim && !shape) ||
	    (order != 'C' && order != 'F'))
		return conn_leave(c, conn_error(c, -EINVAL, "shma_create: bad argument (ndim <= 32, "
					   "order 'C' or 'F')"));
	jshape = json_array();
	for (unsigned i = 0; i < ndim; i++)
		json_array_append_new(jshape, json_integer((json_int_t)shape[i]));
	req = json_pack("{s:s,s:s,s:s,s:o,s:s}", "op", "create", "name", name, "dtype", dtype,
			"shape", jshape, "order", ord);
	if (req && block_size)
		json_object_set_new(req, "block_size", json_integer((json_int_t)block_size));
	err = conn_call(c, req, NULL, 0, &r, NULL, NULL);
	if (!err) {
		note_change(c, r, rev);
		json_decref(r);
	}
	return conn_leave(c, err);
}

int shma_create_tx(shma_conn *c, const char *name, const char *dtype, unsigned ndim,
		   const uint64_t *shape, char order, size_t block_size, shma_array **out)
{
	struct dtype dt;
	const char *why;
	uint64_t n;
	int err = conn_enter(c);

	if (err)
		return err;
	if (!name || !name_ok(name, &why))
		return conn_leave(c, conn_error(c, -EINVAL, "bad array name: %s",
						name ? why : "NULL"));
	if (!dtype || dtype_parse(dtype, &dt, &why))
		return conn_leave(c, conn_error(c, -EINVAL, "bad dtype: %s", dtype ? why : "NULL"));
	if (ndim > CONN_MAXDIM || (ndim && !shape) || (order != 'C' && order != 'F'))
		return conn_leave(c, conn_error(c, -EINVAL, "shma_create_tx: ndim <= 32, order "
						"'C' or 'F'"));
	n = dt.size;
	for (unsigned i = 0; i < ndim; i++)
		if (__builtin_mul_overflow(n, shape[i], &n) || n > (UINT64_C(1) << 60))
			return conn_leave(c, conn_error(c, -EINVAL, "shape too large"));
	if (!block_size)
		block_size = c->default_blksize;
	if (!util_is_pow2(block_size) || block_size < PAGE_4K)
		return conn_leave(c, conn_error(c, -EINVAL, "block size %zu is not a power of "
						"two >= 4096", block_size));
	if (array_find(c, name))
		return conn_leave(c, conn_error(c, -EEXIST, "array \"%s\" is open on this "
						"connection", name));
	{
		/* a name taken at the snapshot is refused now, not at commit */
		json_t *r;

		err = conn_call(c, json_pack("{s:s,s:s}", "op", "stat", "name", name), NULL, 0, &r,
				NULL, NULL);
		if (!err) {
			json_decref(r);
			return conn_leave(c, conn_error(c, -EEXIST, "array \"%s\" exists at "
							"revision %" PRIu64, name, c->snap));
		}
		if (err != -ENOENT)
			return conn_leave(c, err);
		c->err[0] = 0;
	}
	err = array_new_pending(c, name, dt.str, ndim, shape, order, block_size, out);
	if (!err)
		list_add_tail(&(*out)->link, &c->arrays);
	return conn_leave(c, err);
}

int shma_delete(shma_conn *c, const char *name, uint64_t *rev)
{
	json_t *r;
	int err = conn_enter(c);

	if (err)
		return err;
	err = conn_call(c, json_pack("{s:s,s:s}", "op", "delete", "name", name), NULL, 0, &r,
			NULL, NULL);
	if (!err) {
		note_change(c, r, rev);
		json_decref(r);
	}
	return conn_leave(c, err);
}

/* ---- open / close -------------------------------------------------------- */

int shma_open(shma_conn *c, const char *name, shma_array **out)
{
	struct shma_array *a;
	json_t *r;
	int err = conn_enter(c);

	if (err)
		return err;
	a = array_find(c, name);
	if (a && !a->deleted) {
		a->refs++;
		*out = a;
		return conn_leave(c, 0);
	}
	err = conn_call(c, json_pack("{s:s,s:s}", "op", "open", "name", name), NULL, 0, &r, NULL,
			NULL);
	if (err)
		return conn_leave(c, err);
	if (a) {
		/* a handle on a deleted incarnation: it becomes the new one */
		json_t *e = json_pack("{s:b,s:O,s:O}", "recreated", 1, "meta",
				      json_object_get(r, "meta"), "blocks",
				      json_object_get(r, "blocks"));

		err = array_apply(a, e);
		json_decref(e);
		if (!err) {
			a->refs++;
			*out = a;
		}
	} else {
		err = array_new(c, json_object_get(r, "meta"), json_object_get(r, "blocks"), out);
		if (!err)
			list_add_tail(&(*out)->link, &c->arrays);
	}
	json_decref(r);
	return conn_leave(c, err);
}

void shma_close(shma_array **ap)
{
	struct shma_array *a = *ap;
	struct shma_conn *c;

	if (!a)
		return;
	c = a->conn;
	pthread_mutex_lock(&c->lock);
	if (--a->refs == 0) {
		/* the revision is free to go; nothing waits for the answer */
		if (a->is_ref && !conn_forked(c) && c->fd >= 0)
			conn_send_later(c, json_pack("{s:s,s:I}", "op", "unpin", "revision",
						     (json_int_t)a->ref_rev));
		array_free(a);
	}
	pthread_mutex_unlock(&c->lock);
	*ap = NULL;
}

/* ---- transactions -------------------------------------------------------- */

/* Apply a changes object ({name: entry}) to the open arrays. */
static int apply_changes(struct shma_conn *c, json_t *arrays)
{
	const char *name;
	json_t *e;
	int first_err = 0;

	json_object_foreach(arrays, name, e) {
		struct shma_array *a = array_find(c, name);
		int err;

		if (!a)
			continue;
		err = array_apply(a, e);
		if (err && !first_err)
			first_err = err;
	}
	return first_err;
}

static int sync_locked(struct shma_conn *c, bool to_given, uint64_t to)
{
	json_t *req, *r;
	bool from_stream;
	int err;

	sub_drain(c);
	if (!to_given) /* 0: the broker's newest */
		to = c->heard > c->snap && !c->inv_overflow ? c->heard : 0;
	from_stream = to && to > c->snap && pending_complete(c, to);
	req = json_pack("{s:s}", "op", "sync");
	if (to)
		json_object_set_new(req, "revision", json_integer((json_int_t)to));
	if (from_stream)
		json_object_set_new(req, "changes", json_false());
	err = conn_call(c, req, NULL, 0, &r, NULL, NULL);
	if (err == SHMA_ENOTKEPT && !to_given) {
		/* what we heard of is gone already: the newest will do */
		from_stream = false;
		err = conn_call(c, json_pack("{s:s}", "op", "sync"), NULL, 0, &r, NULL, NULL);
	}
	if (err)
		return err;
	to = (uint64_t)json_integer_value(json_object_get(r, "revision"));
	if (from_stream) {
		size_t i;
		json_t *j;

		json_array_foreach(c->pending, i, j) {
			if ((uint64_t)json_integer_value(json_object_get(j, "revision")) > to)
				break;
			err = err ? err : apply_changes(c, json_object_get(j, "arrays"));
			c->st.invalidations++;
		}
	} else {
		err = apply_changes(c, json_object_get(r, "arrays"));
		if (to > c->snap && c->zsub)
			c->st.resyncs++;
	}
	json_decref(r);
	c->snap = to;
	if (c->heard < to)
		c->heard = to;
	if (!to_given)
		c->inv_overflow = false; /* at the broker's newest, or what followed it */
	pending_trim(c);
	c->st.syncs++;
	return err;
}

int shma_sync(shma_conn *c, uint64_t *rev)
{
	int err = conn_enter(c);

	if (err)
		return err;
	err = sync_locked(c, false, 0);
	if (rev)
		*rev = c->snap;
	return conn_leave(c, err);
}

int shma_sync_to(shma_conn *c, uint64_t rev)
{
	int err = conn_enter(c);

	if (err)
		return err;
	return conn_leave(c, sync_locked(c, true, rev));
}

int shma_abort(shma_conn *c)
{
	struct list_head *it;
	int err = conn_enter(c);

	if (err)
		return err;
	for (it = c->arrays.next; it != &c->arrays; it = it->next)
		array_abort(container_of(it, struct shma_array, link));
	return conn_leave(c, 0);
}

int shma_commit(shma_conn *c, uint64_t *rev)
{
	struct list_head *it;
	uint64_t data_off = 0, pages = 0;
	json_t *arrs, *r;
	int data_fd, err = conn_enter(c);

	if (err)
		return err;
	if (!c->writable)
		return conn_leave(c, conn_error(c, -EROFS, "this connection is read-only"));
	/* the page-data file is reused: its pages need no zeroing next time */
	if (c->data_fd < 0)
		c->data_fd = memfd_create("shma-commit", MFD_CLOEXEC);
	data_fd = c->data_fd;
	arrs = json_array();
	if (data_fd < 0 || !arrs) {
		err = conn_error(c, -errno, "cannot prepare the commit: %s", strerror(errno));
		goto out;
	}
	for (it = c->arrays.next; it != &c->arrays; it = it->next) {
		err = array_gather(container_of(it, struct shma_array, link), arrs, data_fd,
				   &data_off, &pages);
		if (err) {
			if (err == SHMA_ECONFLICT)
				c->st.conflicts++;
			goto out;
		}
	}
	if (json_array_size(arrs) == 0) { /* nothing to commit */
		if (rev)
			*rev = c->snap;
		goto out;
	}
	err = conn_call(c, json_pack("{s:s,s:I,s:O}", "op", "commit", "base", (json_int_t)c->snap,
				     "arrays", arrs),
			&data_fd, data_off ? 1 : 0, &r, NULL, NULL);
	if (err) {
		if (err == SHMA_ECONFLICT)
			c->st.conflicts++;
		goto out;
	}
	/* our changes are committed: drop them, then take everybody's */
	for (it = c->arrays.next; it != &c->arrays; it = it->next)
		array_committed(container_of(it, struct shma_array, link));
	err = apply_changes(c, json_object_get(r, "arrays"));
	c->snap = (uint64_t)json_integer_value(json_object_get(r, "revision"));
	if (c->heard < c->snap)
		c->heard = c->snap;
	pending_trim(c);
	json_decref(r);
	c->st.commits++;
	c->st.pages_sent += pages;
	if (rev)
		*rev = c->snap;
out:
	json_decref(arrs);
	/* the broker has read it (it answered) or never will: keep up to
	 * DATA_KEEP bytes of it for the next commit, give the rest back */
	if (data_off > DATA_KEEP && c->data_fd >= 0 && ftruncate(c->data_fd, 0) < 0) {
		util_close(c->data_fd);
		c->data_fd = -1;
	}
	return conn_leave(c, err);
}
