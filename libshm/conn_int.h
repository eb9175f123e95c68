/* conn_int.h - internals shared by conn.c (the broker connection and its
 * transactions) and conn_array.c (array handles).
 *
 * Lock order:
 *
 *   shma_conn.lock          every shma_conn / shma_array call, whole
 *     virtmem's vm_mutex    (taken inside shma_fileh_* / shma_map calls)
 *       shma_array.lock     the block table, pool fd and block count that
 *                           mapblk reads from the fault path
 *
 * mapblk runs without vm_mutex (virtmem's rule) and takes only
 * shma_array.lock, so a fault never waits for a transaction boundary except
 * for the instant a table entry changes.
 */
#ifndef SHMA_CONN_INT_H
#define SHMA_CONN_INT_H

#include "pagemap.h"
#include "proto.h"
#include "shma.h"
#include "util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CONN_NAME_MAX 200
#define CONN_MAXDIM 32

struct shma_array {
	struct shma_conn *conn;
	struct list_head link; /* conn->arrays */
	unsigned refs;	       /* shma_open calls not yet closed */
	char name[CONN_NAME_MAX + 1];
	uint64_t id; /* incarnation at the snapshot */
	char dtype[5];
	unsigned itemsize;
	char order;
	size_t blksize;
	/* shape as of the snapshot */
	unsigned ndim;
	uint64_t shape[CONN_MAXDIM];
	uint64_t nbytes;
	/* a shape change of this transaction */
	bool resized;
	unsigned rs_ndim;
	uint64_t rs_shape[CONN_MAXDIM];
	uint64_t rs_nbytes;
	bool pending;	      /* created by this transaction (shma_create_tx) */
	bool deleted;	      /* gone as of the snapshot */
	bool recreated;	      /* re-created under this transaction: it conflicts */
	uint64_t *doomed;     /* dirty blocks another commit changed: conflicts */
	size_t ndoomed, capdoomed;

	pthread_mutex_t lock; /* protects the three fields below */
	struct pagemap table; /* blk -> (void *)(slot offset + 1) */
	int pool_fd;	      /* borrowed from the connection */
	uint64_t nblocks;     /* blocks an access may map (beyond: SIGBUS) */

	struct shma_file_ops ops;
	shma_file *file;
	shma_fileh *fh;
	shma_mapping *map;
	uint64_t first; /* first block the mapping covers (0 but for refs) */
	uint64_t cap;	/* blocks the mapping covers (>= nblocks - first) */

	/* an opened ArrayRef: read-only, at a pinned revision, only the
	 * blocks of its extent; on conn->refs, never committed or synced */
	bool is_ref;
	uint64_t ref_rev;
};

struct shma_conn {
	pthread_mutex_t lock;
	pid_t pid; /* the process that connected */
	char *path;
	struct shma_conn_options opts;
	int fd;	     /* the broker socket, -1 when lost */
	int pool_fd; /* the page pool */
	int data_fd; /* page data of commits, reused; -1 until the first */
	uint64_t pool_size;
	size_t max_message; /* PROTO_MIN_INLINE until hello says more; never less */
	struct proto_rbuf rbuf; /* replies are received into it (in conn_call) */
	size_t default_blksize;
	char store[40];
	char *publish;
	bool writable;
	uint64_t snap;

	void *zctx, *zsub; /* invalidations; NULL without */
	uint64_t heard;	   /* newest revision heard of */
	json_t *pending;   /* invalidation messages newer than snap, in order */
	bool inv_overflow; /* the stream may have dropped messages since the last
			    * sync to the newest: heard is not to be trusted */
	unsigned drop_next; /* test hook: invalidations to throw away */

	shma_ram *ram;
	struct list_head arrays; /* open arrays (the transaction's) */
	struct list_head refs;	 /* opened ArrayRefs */
	char err[512];
	struct shma_conn_stats st;
	bool snapshot;	   /* hello pins a snapshot (all but refs' connections) */
	unsigned unread;   /* replies of conn_send_later not read yet */
};

/* conn.c */
/* The lock discipline of public calls on a connection: enter() checks for
 * fork and takes the lock (0 or SHMA_EFORKED); leave() drops it, returning
 * err (with c->err filled when it is not). */
int conn_enter(struct shma_conn *c);
int conn_leave(struct shma_conn *c, int err);
/* Send req (consumed) with fds; wait for the reply.  0 with *reply (owned)
 * or an error with c->err set; a lost connection is SHMA_EDISCONNECTED. */
int conn_call(struct shma_conn *c, json_t *req, const int *fds, int nfds, json_t **reply,
	      int *rfds, int *nrfds);
int conn_error(struct shma_conn *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool conn_forked(const struct shma_conn *c);
/* shma_connect, with or without a pinned snapshot (a connection that only
 * opens refs at pinned revisions needs none). */
int conn_connect(const char *socket_path, const struct shma_conn_options *opts, bool snapshot,
		 shma_conn **out);
/* Send req (consumed) without waiting: its reply is read, and dropped,
 * before the connection's next request (for unpin: nothing waits on it). */
int conn_send_later(struct shma_conn *c, json_t *req);
/* Keep msg as the calling thread's shma_last_error(). */
void conn_set_last_error(const char *msg);
/* Test hook: throw away the next n invalidation messages (to force a gap). */
void conn_debug_drop_invalidations(struct shma_conn *c, unsigned n);

/* admin.c */
/* shma_broker_stats inside a call that holds the connection (between
 * conn_enter and conn_leave): 0 with *out filled (a field the broker left
 * out is 0), or an error with c->err set. */
int conn_broker_stats(struct shma_conn *c, struct shma_broker_stats *out);

/* conn_array.c */
/* Set up an array handle from an open reply (meta + blocks). */
int array_new(struct shma_conn *c, json_t *meta, json_t *blocks, struct shma_array **out);
/* Set up the handle of an array this transaction creates. */
int array_new_pending(struct shma_conn *c, const char *name, const char *dtype,
		      unsigned ndim, const uint64_t *shape, char order, size_t blksize,
		      struct shma_array **out);
/* Set up a ref handle: revision rev, mapping only the blocks of [lo, hi);
 * runs: [[first block, count, first slot], ...] (slots adjacent in a run). */
int array_new_ref(struct shma_conn *c, json_t *meta, json_t *blocks, uint64_t rev, uint64_t lo,
		  uint64_t hi, struct shma_array **out);
void array_free(struct shma_array *a);
/* Apply one array's entry of a changes object (sync/commit reply, or an
 * invalidation): blocks, meta, deleted, created/recreated. */
int array_apply(struct shma_array *a, json_t *e);
/* Drop every page (changes too); point the table at the current pool. */
void array_reset(struct shma_array *a);
/* Append a's changes to a commit: its JSON entry to arrs and its changed
 * pages to the data memfd at *data_off (advanced; *pages counts them).
 * Appends nothing when a has no change; SHMA_ECONFLICT when a change of a's
 * is already known to conflict (c->err says which). */
int array_gather(struct shma_array *a, json_t *arrs, int data_fd, uint64_t *data_off,
		 uint64_t *pages);
/* After a successful commit: drop the committed private copies. */
void array_committed(struct shma_array *a);
/* Drop uncommitted changes. */
void array_abort(struct shma_array *a);
struct shma_array *array_find(struct shma_conn *c, const char *name);

#endif
