/* shma.h - public API of libshm, the library every shma worker links.
 *
 * This header is the whole public surface: everything else in libshm/ is
 * internal.  All public symbols carry the prefix shma_ / SHMA_.
 *
 * Conventions
 * -----------
 * - Actions return int: 0 on success, -errno for system errors, or one of the
 *   library codes SHMA_E* (all below -4096).  shma_strerror() names any of
 *   them.  Predicates return bool.
 * - "borrowed": the callee keeps no reference past the call, or the caller
 *   keeps ownership.  "owned": the caller must release it with the named
 *   destroy function.  Destroy functions take T ** and NULL the caller's
 *   pointer; passing a pointer to NULL is a no-op.
 *
 * virtmem: user-space virtual memory
 * ----------------------------------
 * A *file* is a sequence of fixed-size blocks (block size: a power of two,
 * >= 4 KiB) supplied by user callbacks.  Two kinds:
 *
 *   copy-in     loadblk() fills a private RAM page with a block's data;
 *               storeblk() writes a dirty page back (at writeout).
 *   direct-map  mapblk() names an fd + offset holding the block (or a hole,
 *               read as zeros); reads map it read-only and allocate nothing.
 *               The first write copies the block into a RAM page.
 *
 * A *file handle* (fileh) is one view of a file plus local changes (dirty
 * pages).  A *mapping* is an address range over a range of blocks of a
 * handle; a handle may have several mappings, overlapping in file space, and
 * they share its pages.  Memory of a mapping starts inaccessible; the first
 * access to a block traps (SIGSEGV) and the library's fault handler loads or
 * maps the block, then the access continues.  *RAM* is the local memory
 * (a memfd, with a byte limit) that holds private pages.
 *
 * Thread safety: every function below may be called from any thread; the
 * library serialises its state with one process-wide lock and never holds it
 * while calling loadblk/storeblk/mapblk.  Mapped memory may be read and
 * written from any number of threads.  Exceptions are named at the function
 * (closing a handle or unmapping a mapping that another thread is using is the
 * caller's race, as with munmap).
 *
 * After fork() the child inherits mappings as they are; it must not call
 * libshm functions on objects created by the parent.
 */
#ifndef SHMA_H
#define SHMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */

enum {
	SHMA_EBASE = -4096,
	SHMA_ERAMLIMIT = SHMA_EBASE - 1, /* RAM limit reached: no clean page to reclaim */
	SHMA_EBUSY = SHMA_EBASE - 2,	 /* object still in use (e.g. RAM with pages) */
	SHMA_ENOTMAPPED = SHMA_EBASE - 3, /* address is not inside a shma mapping */
	SHMA_ERECURSIVE = SHMA_EBASE - 4, /* fault on a block this thread is loading */
	SHMA_ECONFLICT = SHMA_EBASE - 5,  /* commit conflicts with a newer commit */
	SHMA_ENOTKEPT = SHMA_EBASE - 6,	  /* revision no longer kept by the broker */
	SHMA_EPROTOCOL = SHMA_EBASE - 7,  /* malformed or unexpected protocol message */
	SHMA_EDISCONNECTED = SHMA_EBASE - 8, /* the broker connection is lost */
	SHMA_EFORKED = SHMA_EBASE - 9,	  /* connection used in a child after fork() */
	SHMA_EREFUSED = SHMA_EBASE - 10,  /* the broker refused the request (see message) */
	SHMA_EUNCOMMITTED = SHMA_EBASE - 11, /* range has uncommitted changes */
	SHMA_ESTORE = SHMA_EBASE - 12,	  /* the ref names another store (re-created?) */
	SHMA_EBADREF = SHMA_EBASE - 13,	  /* malformed ArrayRef */
	SHMA_ELAST = SHMA_EBASE - 14,
};

/* A static, human-readable message for a return code (0, -errno or SHMA_E*).
 * Never NULL; unknown codes give "unknown error". */
const char *shma_strerror(int err);

/* ---- RAM --------------------------------------------------------------- */

typedef struct shma_ram shma_ram;

/* Create local RAM for private pages, at most `limit` bytes (rounded down to
 * 4 KiB, must be >= 4 KiB).  Memory is reserved when a page is allocated,
 * so running out is an error the caller sees, never a later SIGBUS.  Freed
 * pages are kept for reuse (a quarter of the limit at most, and 256 MiB),
 * the rest goes back to the system at once; shma_ram_trim() gives back the
 * kept ones.  The limit counts both.  When it is reached the
 * least-recently-used clean pages are reclaimed; if none can be, the
 * allocation fails with SHMA_ERAMLIMIT.
 * *out is owned: release with shma_ram_destroy(). */
int shma_ram_new(size_t limit, shma_ram **out);

/* Destroy RAM.  Fails with SHMA_EBUSY (and changes nothing) while any file
 * handle using it is open.  NULLs *ramp on success. */
int shma_ram_destroy(shma_ram **ramp);

/* Evict up to `max` least-recently-used clean pages (never dirty or loading
 * ones) — RAM-backed ones and direct-mapped ones alike: each is unmapped
 * from every mapping and its memory freed; the next access loads it again.
 * Returns how many pages were evicted. */
size_t shma_ram_reclaim(shma_ram *ram, size_t max);

/* Bound the number of pages (loaded, dirty or loading; RAM-backed or mapped
 * from a base) of all handles using this RAM.  Every mapped block costs the
 * process a kernel VMA or two, and vm.max_map_count (65530 by default) caps
 * those: past the bound the least-recently-used clean pages are evicted, and
 * if none is clean the access fails with SHMA_ERAMLIMIT.  Default
 * SHMA_RAM_DEFAULT_MAX_PAGES.  0 or -EINVAL (max_pages == 0). */
#define SHMA_RAM_DEFAULT_MAX_PAGES 16384
int shma_ram_set_max_pages(shma_ram *ram, size_t max_pages);

/* Give the memory of freed pages kept for reuse back to the system; returns
 * how many bytes. */
size_t shma_ram_trim(shma_ram *ram);

struct shma_ram_stats {
	size_t limit;	   /* bytes */
	size_t used;	   /* bytes held by pages */
	size_t cached;	   /* bytes held by freed pages kept for reuse */
	size_t npages;	   /* pages allocated */
	size_t nreclaimed; /* pages evicted so far (explicitly or at the limit) */
};
void shma_ram_stats(shma_ram *ram, struct shma_ram_stats *st);

/* ---- files ------------------------------------------------------------- */

typedef struct shma_file shma_file;

/* Callbacks of a file.  Exactly one of loadblk (copy-in) or mapblk
 * (direct-map) is set.  Callbacks run without the library lock held, possibly
 * from inside the SIGSEGV handler of the faulting thread, possibly in several
 * threads at once for different blocks; never twice at once for one block of
 * one handle.  They may take their own locks and may access other mappings.
 * They must not access a mapping of the block they are called for: it would
 * wait for itself, so a fault there ends the process with a message naming
 * SHMA_ERECURSIVE (shma_prefault there returns SHMA_ERECURSIVE).
 * All return 0 or a negative error code. */
struct shma_file_ops {
	/* SHMA_FILE_COW_PRIVATE (direct-map only): the first write to a block
	 * maps its base MAP_PRIVATE read-write in the faulting mapping, so the
	 * kernel copies only the 4 KiB pages written and no RAM is used.  Such
	 * a block's changes live in that one mapping; should another mapping of
	 * the handle need the block (or that mapping go), they move into RAM. */
	unsigned flags;
	/* copy-in: fill all of buf (blksize bytes; contents unspecified on entry)
	 * with block blk. */
	int (*loadblk)(shma_file *f, uint64_t blk, void *buf);
	/* copy-in and direct-map: write back block blk (blksize bytes).  Needed
	 * only by shma_fileh_writeout(SHMA_WRITEOUT_STORE). */
	int (*storeblk)(shma_file *f, uint64_t blk, const void *buf);
	/* direct-map: set *fd and *off to where block blk lives (blksize bytes at
	 * off, off a multiple of 4 KiB), or *fd = -1 for a hole (zeros).  The fd
	 * is borrowed: it must stay open and its data unchanged while any handle
	 * of the file may still map the block. */
	int (*mapblk)(shma_file *f, uint64_t blk, int *fd, uint64_t *off);
};

/* SHMA_FILE_READAHEAD (direct-map only): when a mapping is read block after
 * block, a helper thread maps the next few blocks and fills their page
 * tables ahead of the reader (on another core, if one is idle). */
enum { SHMA_FILE_COW_PRIVATE = 1 << 0, SHMA_FILE_READAHEAD = 1 << 1 };

/* Create a file.  ops is borrowed and must outlive the file; opaque is the
 * caller's, returned by shma_file_opaque().  blksize: power of two >= 4096.
 * *out is owned: release with shma_file_destroy(). */
int shma_file_new(const struct shma_file_ops *ops, size_t blksize, void *opaque,
		  shma_file **out);
/* Destroy a file; SHMA_EBUSY while any handle of it is open. */
int shma_file_destroy(shma_file **fp);
void *shma_file_opaque(const shma_file *f);
size_t shma_file_blksize(const shma_file *f);

/* ---- file handles ------------------------------------------------------ */

typedef struct shma_fileh shma_fileh;

/* Open a handle on f using ram for private pages (both borrowed; both must
 * outlive the handle).  *out is owned: release with shma_fileh_close(). */
int shma_fileh_open(shma_file *f, shma_ram *ram, shma_fileh **out);

/* Close a handle: unmaps its remaining mappings, drops all its pages (dirty
 * ones included: their changes are lost) and NULLs *fhp.  The caller must
 * ensure no other thread is using the handle's memory. */
void shma_fileh_close(shma_fileh **fhp);

/* Page states.  A block of a handle is in exactly one state:
 *
 *   EMPTY                 no page: nothing loaded, nothing mapped
 *   LOADING               a thread runs loadblk/mapblk for it; the lock is
 *                         released; other threads touching it wait
 *   LOADING_INVALIDATED   invalidated while loading: the result will be
 *                         thrown away and the next access loads again
 *   LOADED                clean data (copy-in: RAM page; direct-map: the
 *                         base fd), mapped read-only where mapped
 *   DIRTY                 changed locally — in a RAM page shared by the
 *                         mappings, or (SHMA_FILE_COW_PRIVATE) in one
 *                         mapping's private copy — mapped read-write where
 *                         mapped; never reclaimed
 *
 *        access (fault/prefault)        loadblk/mapblk ok
 *   EMPTY -----------------> LOADING ----------------------> LOADED
 *     ^                    |  |  loadblk error -> EMPTY        |  ^
 *     |       invalidate   |  v                 write access |  | writeout(MARKSTORED)
 *     |                    | LOADING_INVALIDATED             v  |   (copy-in)
 *     +-------------------------- (load returns) --------- DIRTY
 *     ^  invalidate / reclaim (clean only) / discard / close  |
 *     +--------------------------------------------------------+
 *        (direct-map: writeout(MARKSTORED) also -> EMPTY, so the next access
 *         maps the base again)
 *
 * Transitions: shma fault handler and shma_prefault() (EMPTY->LOADING->LOADED,
 * LOADED->DIRTY), shma_fileh_invalidate(), shma_fileh_discard(),
 * shma_fileh_writeout(), shma_ram_reclaim() and allocation at the RAM limit,
 * shma_fileh_close().
 */
enum shma_page_state {
	SHMA_PAGE_EMPTY = 0,
	SHMA_PAGE_LOADING,
	SHMA_PAGE_LOADING_INVALIDATED,
	SHMA_PAGE_LOADED,
	SHMA_PAGE_DIRTY,
};
enum shma_page_state shma_fileh_block_state(shma_fileh *fh, uint64_t blk);

/* Writeout of dirty pages, in ascending block order whatever the order they
 * were dirtied in.  flags: SHMA_WRITEOUT_STORE calls storeblk for each dirty
 * page; SHMA_WRITEOUT_MARKSTORED makes them clean (copy-in: LOADED and
 * read-only again; direct-map: dropped, so the next access maps the base).
 * Both may be given; at least one must be, and no other bit (-EINVAL).
 * A storeblk error stops the writeout and is returned; the pages stay dirty
 * (none is marked stored when STORE fails) and the handle stays usable. */
enum {
	SHMA_WRITEOUT_STORE = 1 << 0,
	SHMA_WRITEOUT_MARKSTORED = 1 << 1,
};
int shma_fileh_writeout(shma_fileh *fh, unsigned flags);

/* Drop every dirty page (their changes are lost); next access loads again. */
void shma_fileh_discard(shma_fileh *fh);

/* The block's contents changed in the backing store: a clean page is dropped,
 * a dirty page is dropped with its changes, a page being loaded has the load's
 * result thrown away (the access that started it loads again).  A block with
 * no page: nothing happens.  Never waits for a load in progress. */
void shma_fileh_invalidate(shma_fileh *fh, uint64_t blk);

/* Copy up to cap dirty block numbers, ascending, into out; returns the total
 * number of dirty blocks (which may exceed cap; out may be NULL if cap is 0). */
size_t shma_fileh_dirty_blocks(shma_fileh *fh, uint64_t *out, size_t cap);

/* ---- mappings ---------------------------------------------------------- */

typedef struct shma_mapping shma_mapping;

/* Map nblk blocks of fh starting at block first into fresh address space
 * (nothing accessible yet; blocks come in on access).  Installs the fault
 * handler if it is not installed.  *out is owned: release with
 * shma_unmap().  Pages stay with the handle, so unmapping keeps dirty data. */
int shma_map(shma_fileh *fh, uint64_t first, uint64_t nblk, shma_mapping **out);
/* Unmap.  Private copies held only by this mapping (SHMA_FILE_COW_PRIVATE)
 * move into RAM first; if RAM cannot take them, nothing is unmapped and
 * SHMA_ERAMLIMIT is returned (the changes are kept).  NULLs *mp on success. */
int shma_unmap(shma_mapping **mp);

/* Start of the mapping's memory (valid until shma_unmap) and its length. */
void *shma_mapping_addr(const shma_mapping *m);
size_t shma_mapping_len(const shma_mapping *m);
/* Is block blk (file block number) currently mapped into m? */
bool shma_mapping_block_mapped(const shma_mapping *m, uint64_t blk);

/* Make [addr, addr+len) resident in its mappings, as an access would
 * (SHMA_PREFAULT_WRITE: as a write), so it can be passed to system calls,
 * which get EFAULT instead of a trap.  Returns the first error: a loadblk/
 * mapblk error, SHMA_ERAMLIMIT, or SHMA_ENOTMAPPED if part of the range is not
 * inside a shma mapping (blocks before it are resident).  Residency lasts
 * until reclaim, invalidate, discard or writeout drops the page. */
enum { SHMA_PREFAULT_WRITE = 1 << 0 };
int shma_prefault(void *addr, size_t len, unsigned flags);

/* ---- the fault handler ------------------------------------------------- */

/* Install libshm's SIGSEGV handler (idempotent; shma_map() calls it).  It
 * handles only access faults (SEGV_ACCERR) inside shma mappings; any other
 * SIGSEGV goes to the handler installed before it, or to the default action
 * (so a real crash still crashes, with a core).  errno is preserved.
 * Call it again after something else replaced the SIGSEGV handler (cmocka
 * does so before each test). */
int shma_vm_install_handler(void);

/* When a fault cannot be served (loadblk/mapblk failed, RAM limit reached),
 * the faulting thread gets SIGBUS (si_code BUS_ADRERR, si_addr the faulting
 * address), as the kernel does for an I/O error on a file mapping; the block
 * stays EMPTY, so an access after the SIGBUS handler returns tries again.
 * Without a SIGBUS handler the process dies with a core.  This returns the
 * error code of the last such failure in the calling thread (0 if none). */
int shma_vm_fault_error(void);

/* ---- broker connections ------------------------------------------------
 *
 * A connection to shma-broker sees the committed arrays at one revision, its
 * *snapshot*, from connect (the newest revision then) until a transaction
 * boundary moves it.  Open arrays are mapped whole: blocks come in on first
 * access straight from the broker's page pool (no round trip on the fault
 * path), holes read as zeros and cost nothing.  Writes go to private copies
 * of the 4 KiB pages written.  Other connections' commits never change
 * memory under this one.
 *
 * Transaction boundaries (one call each, for all arrays of the connection):
 *   shma_commit  publish this connection's changes atomically as the next
 *                revision, or fail with SHMA_ECONFLICT if another commit
 *                changed any of the same blocks (or an array's shape) after
 *                the snapshot (first committer wins); on success the
 *                snapshot becomes the new revision.
 *   shma_abort   drop this connection's uncommitted changes.
 *   shma_sync    move the snapshot to a newer revision (the newest one this
 *                connection has heard of through the broker's invalidations,
 *                or the broker's newest).  Changed blocks show their new data
 *                on next access.  Uncommitted changes are kept; if another
 *                commit changed one of their blocks, the next shma_commit
 *                fails with SHMA_ECONFLICT (shma_abort, then sync).
 * Pointers into mapped memory stay valid across boundaries, except after a
 * shape change or a re-creation of the array: call shma_array_data again.
 *
 * Threads: every function here may be called from any thread; each
 * connection serialises its calls.  Mapped memory may be read and written
 * from any number of threads, but writes must not race with a transaction
 * boundary of the same connection (a write during shma_commit may or may not
 * be part of it, and may be lost).  The invalidation socket (ZeroMQ SUB) is
 * touched only inside shma_sync, shma_commit and shma_poll, under the
 * connection's lock.
 *
 * fork(): the child inherits mapped memory as it is, and may read it (and
 * touch blocks not yet mapped); any other call on the parent's connection or
 * arrays in the child returns SHMA_EFORKED, except shma_close and
 * shma_disconnect, which there release only the child's copies.
 *
 * Broker gone: calls return SHMA_EDISCONNECTED; memory already mapped stays
 * readable; shma_reconnect() connects again.
 */

typedef struct shma_conn shma_conn;
typedef struct shma_array shma_array;

struct shma_conn_options {
	size_t ram_limit; /* RAM for private copies that must move into RAM;
			   * 0: 256 MiB */
	size_t max_pages; /* bound on blocks mapped at once; 0: the default of
			   * shma_ram_set_max_pages */
	bool no_invalidations; /* do not subscribe to the invalidation stream */
};

/* Connect to the broker at socket_path, or (NULL) at $SHMA_SOCKET, or at
 * the default configuration's socket ($XDG_RUNTIME_DIR/shma/broker.sock,
 * else /tmp/shma-<uid>/broker.sock); a relative path is taken from the
 * current directory (and kept absolute: refs carry it).  opts may be NULL.  *out is owned:
 * release with shma_disconnect(). */
int shma_connect(const char *socket_path, const struct shma_conn_options *opts,
		 shma_conn **out);
/* Why the calling thread's last shma_connect or shma_ref_open failed (""
 * after one that succeeded): these have no connection of the caller's to
 * keep the broker's words.  Valid until the thread's next such call. */
const char *shma_last_error(void);
/* Close every array still open (their uncommitted changes are dropped) and
 * the connection; NULLs *cp. */
void shma_disconnect(shma_conn **cp);
/* After SHMA_EDISCONNECTED: connect again (to the same socket path) and
 * reopen every open array at the broker's newest revision; uncommitted
 * changes are dropped; an array that no longer exists reads as SIGBUS. */
int shma_reconnect(shma_conn *c);

/* The snapshot revision. */
uint64_t shma_revision(shma_conn *c);
/* Can this connection commit (the broker's access configuration)? */
bool shma_writable(shma_conn *c);
/* The message of the last failed call on c (the broker's words where it
 * answered), "" if none.  Valid until the next call on c. */
const char *shma_conn_error(shma_conn *c);

/* Newest revision heard of through invalidations (>= the snapshot); no round
 * trip, except after the connection missed stream messages because nothing
 * read them for long (see shma_sync): then it asks the broker's newest.  0,
 * or an error of that request (SHMA_EDISCONNECTED, ...). */
int shma_poll(shma_conn *c, uint64_t *newest);

/* Create an array: name (1-200 of [A-Za-z0-9._-/]), dtype a NumPy type
 * string ("<f8", "|u1", ...), shape of ndim <= 32 sizes, order 'C' or 'F',
 * block_size a power of two >= 4096 (0: the broker's default).  Committed at
 * once as its own revision (*rev, may be NULL); this connection sees it after
 * its next shma_sync or shma_commit.  -EEXIST, -EINVAL, -EROFS, ... */
int shma_create(shma_conn *c, const char *name, const char *dtype, unsigned ndim,
		const uint64_t *shape, char order, size_t block_size, uint64_t *rev);
/* Create an array as part of this transaction: it exists for this
 * connection only (all zeros, writable) until shma_commit publishes it with
 * the transaction's other changes, atomically; the commit fails with
 * SHMA_ECONFLICT if another commit created the name first (-EEXIST if it
 * existed at the snapshot).  shma_abort drops it (the handle then reads as a
 * deleted array).  Arguments as for shma_create; *out is owned: release with
 * shma_close(). */
int shma_create_tx(shma_conn *c, const char *name, const char *dtype, unsigned ndim,
		   const uint64_t *shape, char order, size_t block_size, shma_array **out);
/* Delete an array, committed at once as its own revision. */
int shma_delete(shma_conn *c, const char *name, uint64_t *rev);

/* Open an array as of the snapshot (opening one already open on c returns
 * the same handle, counted).  *out is owned: release with shma_close(). */
int shma_open(shma_conn *c, const char *name, shma_array **out);
/* Release a handle; the last release drops its uncommitted changes (an
 * opened ArrayRef: unpins its revision) and unmaps it.  NULLs *ap. */
void shma_close(shma_array **ap);

struct shma_array_info {
	char name[201];
	char dtype[5];
	char order; /* 'C' or 'F' */
	unsigned ndim;
	uint64_t shape[32];
	uint64_t nbytes;
	size_t block_size;
	uint64_t nblocks;
	uint64_t revision; /* the snapshot it shows */
	bool deleted;	   /* gone as of the snapshot (accesses get SIGBUS) */
};
void shma_array_info(shma_array *a, struct shma_array_info *out);

/* The array's memory: nbytes of ordinary memory (the element at byte offset
 * o is at data + o).  Valid until shma_close, or until a transaction
 * boundary that changed the array's shape or re-created it. */
void *shma_array_data(shma_array *a);

/* Change the array's shape in this transaction (committed by shma_commit,
 * conflicts like data).  Shrinking cuts blocks off and zeroes the tail;
 * growing adds zeros.  The memory may move: call shma_array_data again. */
int shma_resize(shma_array *a, unsigned ndim, const uint64_t *shape);
/* Append n rows along the first axis (C order; for F order, the last) in
 * this transaction: shma_resize with that axis grown by n.  *rows (may be
 * NULL) is where the first new row starts. */
int shma_append(shma_array *a, uint64_t n, void **rows);

int shma_commit(shma_conn *c, uint64_t *rev);
int shma_abort(shma_conn *c);
/* Sync to the newest revision heard of through invalidations and this
 * connection's own changes (if none is newer than the snapshot, or without
 * invalidations: the broker's newest).  The stream lags a little behind the
 * broker: to be sure to see a revision learnt of some other way (a reply
 * from another process, an ArrayRef), use shma_sync_to.  A connection holds
 * at most about 1000 stream messages between its syncs and polls (memory
 * stays bounded when it only commits, or sleeps); past that it misses
 * messages, and its next shma_sync asks the broker for the changes (stats:
 * resyncs) and goes to the broker's newest.  shma_sync_to: to
 * the given revision (an older one is allowed if the broker still keeps it:
 * SHMA_ENOTKEPT otherwise). */
int shma_sync(shma_conn *c, uint64_t *rev);
int shma_sync_to(shma_conn *c, uint64_t rev);

struct shma_conn_stats {
	uint64_t commits, conflicts, syncs;
	uint64_t invalidations; /* stream messages applied (one per batch of the
				  * broker's changes, docs/PROTOCOL.md §12) */
	uint64_t resyncs;	/* syncs that had to ask the broker for changes */
	uint64_t pages_sent;	/* 4 KiB pages committed */
};
void shma_conn_stats(shma_conn *c, struct shma_conn_stats *st);

/* ---- views ----------------------------------------------------------------
 *
 * A view is NumPy's picture of memory: a data pointer (the element at index
 * (0, ..., 0)), a dtype, a shape and strides in bytes (negative allowed).
 * Views are plain values: copy them freely; they borrow the memory of the
 * array they came from and are valid as long as that memory is (see
 * shma_array_data).  All view functions are pure computations (no broker,
 * no locks) and thread-safe; they leave *out untouched on error.
 */
#define SHMA_MAXDIM 32

struct shma_view {
	char *data;	 /* address of element (0, ..., 0) */
	char dtype[5];	 /* NumPy type string, e.g. "<f8" */
	unsigned itemsize;
	unsigned ndim;
	uint64_t shape[SHMA_MAXDIM];
	int64_t strides[SHMA_MAXDIM]; /* bytes */
	/* where it lives: base is the start of the array's memory, so element
	 * (0, ..., 0) is at byte offset (data - base) of the array */
	char *base;
	shma_array *array; /* borrowed; NULL for a view of other memory */
};

/* The whole array as a view (C or F strides by its order). */
int shma_view_of(shma_array *a, struct shma_view *out);
/* A view of any memory: contiguous C-order strides; base = data. */
int shma_view_init(struct shma_view *out, void *data, const char *dtype, unsigned ndim,
		   const uint64_t *shape);

/* Basic slicing of one axis, NumPy semantics: start/stop may be negative
 * (counted from the end) and are clipped; SHMA_END as stop (or start with a
 * negative step) means "to the end"; step != 0, negative walks backwards. */
#define SHMA_END INT64_MIN
int shma_view_slice(const struct shma_view *in, unsigned axis, int64_t start, int64_t stop,
		    int64_t step, struct shma_view *out);
/* Integer index of one axis (negative counts from the end): drops the axis.
 * -ERANGE if out of bounds. */
int shma_view_index(const struct shma_view *in, unsigned axis, int64_t i,
		    struct shma_view *out);
/* NumPy index expression, e.g. "1:10:2, ::-1, 5" or "..., 0" (slices,
 * integers, one "..."): -EINVAL with a reason in why (may be NULL). */
int shma_view_subscript(const struct shma_view *in, const char *expr, struct shma_view *out,
			char *why, size_t whylen);
/* Permute axes (perm NULL: reverse them, as .T). */
int shma_view_transpose(const struct shma_view *in, const unsigned *perm,
			struct shma_view *out);
/* Reshape without copying (one dimension may be SHMA_INFER); -EINVAL if the
 * sizes differ, -ENOTSUP if the layout does not allow it without a copy. */
#define SHMA_INFER UINT64_MAX
int shma_view_reshape(const struct shma_view *in, unsigned ndim, const uint64_t *shape,
		      struct shma_view *out);
/* Reinterpret as another dtype (as ndarray.view(dtype)): the last axis must
 * be contiguous and its byte length divisible by the new item size. */
int shma_view_astype(const struct shma_view *in, const char *dtype, struct shma_view *out);

/* Number of elements; address of an element (idx: ndim indexes, checked:
 * NULL if out of bounds). */
uint64_t shma_view_size(const struct shma_view *v);
void *shma_view_ptr(const struct shma_view *v, const uint64_t *idx);
/* The byte range [lo, hi) of the array that the view's elements occupy,
 * as offsets from v->base (lo == hi for an empty view). */
void shma_view_extent(const struct shma_view *v, uint64_t *lo, uint64_t *hi);
/* Is it C-contiguous (elements adjacent, last axis fastest)? */
bool shma_view_is_contiguous(const struct shma_view *v);

/* ---- ArrayRef ----------------------------------------------------------------
 *
 * An ArrayRef names committed data: which broker (its store id, which changes
 * when the store is re-created, and its socket path), which array, at which
 * revision, and a view of it (dtype, shape, strides, byte offset) with the
 * byte extent [lo, hi) of the array that the view touches.  It is a few
 * hundred bytes of JSON (docs/PROTOCOL.md, "ArrayRef"), never the data:
 * another process opens it and maps the same physical pages.
 */
struct shma_ref {
	char store[40];
	char socket[108];
	char array[201];
	uint64_t revision;
	char dtype[5];
	unsigned ndim;
	uint64_t shape[SHMA_MAXDIM];
	int64_t strides[SHMA_MAXDIM];
	uint64_t offset; /* byte offset of element (0, ..., 0) in the array */
	uint64_t lo, hi; /* byte extent of the array the elements occupy */
};

/* A ref to the data a view of an array shows (the view must come from
 * shma_view_of on an array handle, or from shma_ref_open): the connection's
 * snapshot revision.  Only committed data can be referenced:
 * SHMA_EUNCOMMITTED if a block of the view's extent has changes not yet
 * committed (or the array's shape is changing in this transaction). */
int shma_ref_make(const struct shma_view *v, struct shma_ref *out);

/* JSON text of a ref; *json is malloc'd (free it), *len its length. */
int shma_ref_encode(const struct shma_ref *r, char **json, size_t *len);
/* Parse and check a ref: every field present and of its type, no other
 * field, a known dtype, shape and strides of equal length <= 32, sizes that
 * do not overflow, lo <= hi, every element of the view inside [lo, hi).
 * SHMA_EBADREF with a reason in why (may be NULL) otherwise; *out untouched. */
int shma_ref_decode(const char *json, size_t len, struct shma_ref *out, char *why,
		    size_t whylen);

/* Open a ref: map the blocks of [lo, hi) of the array at the ref's revision
 * (the cost does not depend on the array's size) through a connection of
 * this process to the ref's broker (opened on first use, then reused), and
 * describe the data as *view.  The revision stays pinned until shma_close
 * of *out.  The memory is the committed data; writes to it stay local and
 * are never committed.
 *   SHMA_ENOTKEPT  the broker no longer keeps the revision (the message
 *                  names the retention); with SHMA_REF_HEAD the newest
 *                  revision is opened instead (shma_array_revision of
 *                  *out tells which)
 *   SHMA_ESTORE    the broker at the socket is another store
 *   SHMA_EBADREF   the extent lies outside the array at that revision
 * *out is owned: release with shma_close(). */
enum { SHMA_REF_HEAD = 1 << 0 };
int shma_ref_open(const struct shma_ref *r, unsigned flags, shma_array **out,
		  struct shma_view *view);
/* The revision an array handle shows (a ref's, or its connection's
 * snapshot). */
uint64_t shma_array_revision(shma_array *a);

/* Ask c's broker to keep revision rev for ms milliseconds (at most an hour),
 * whoever is connected: refs to it sent to other processes stay openable
 * even if the sender goes away.  SHMA_ENOTKEPT if it is already gone. */
int shma_lease(shma_conn *c, uint64_t rev, unsigned ms);

/* Send a ref as one ZeroMQ message of two frames, "shma.ref/1" and the JSON
 * (after any routing frames the caller sent with ZMQ_SNDMORE), on any socket
 * type; flags as for zmq_send (e.g. ZMQ_DONTWAIT).  The socket is borrowed.
 * 0 or -errno (zmq_errno()). */
int shma_ref_send(void *zsock, const struct shma_ref *r, int flags);
/* Receive one such message (after the caller took any routing frames):
 * SHMA_EBADREF (with why) for a message that is not a valid ref; the whole
 * message is consumed either way. */
int shma_ref_recv(void *zsock, struct shma_ref *r, int flags, char *why, size_t whylen);

/* ---- administration ------------------------------------------------------
 *
 * What the `shma` tool needs beyond opening arrays: the catalog as of the
 * connection's snapshot (without opening or mapping anything) and the
 * broker's own counters.  Each call is one round trip; the message of a
 * failure is in shma_conn_error(c).
 */

/* An array's metadata as the broker records it. */
struct shma_array_stat {
	char name[201];
	uint64_t id;	  /* the incarnation (a re-created name gets a new one) */
	char dtype[5];
	char order;	  /* 'C' or 'F' */
	unsigned ndim;
	uint64_t shape[SHMA_MAXDIM];
	uint64_t nbytes;
	size_t block_size;
	uint64_t nblocks;
	uint64_t created; /* the revision that created this incarnation */
	/* blocks that are not holes at the revision looked at; only
	 * shma_stat fills it: shma_list sets SHMA_UNKNOWN */
	uint64_t blocks_stored;
};
#define SHMA_UNKNOWN UINT64_MAX

/* The arrays visible at c's snapshot, sorted by name: *out is a malloc'd
 * array of *n entries (free() it; NULL when *n is 0), *rev (may be NULL) the
 * snapshot.  On error *out is NULL and *n 0. */
int shma_list(shma_conn *c, struct shma_array_stat **out, size_t *n, uint64_t *rev);

/* One array's metadata at c's snapshot, with blocks_stored; *rev (may be
 * NULL) the snapshot.  -ENOENT if it is not visible there (created after the
 * snapshot: shma_sync first). */
int shma_stat(shma_conn *c, const char *name, struct shma_array_stat *out, uint64_t *rev);

/* The broker's counters (docs/PROTOCOL.md, "stats"); fields an older broker
 * does not send are 0. */
struct shma_broker_stats {
	uint64_t pool_size, pool_used; /* bytes */
	uint64_t slots;		       /* pool slots in use */
	uint64_t head;		       /* the newest revision */
	uint64_t oldest_kept;	       /* the oldest revision retention keeps */
	uint64_t revisions_kept;       /* head - oldest_kept + 1 */
	uint64_t pins;		       /* snapshots, open pins and leases held */
	uint64_t arrays;	       /* live at the head */
	uint64_t incarnations;	       /* held, live or kept for old revisions */
	uint64_t versions;	       /* block versions held */
	uint64_t clients;	       /* connections */
	uint64_t commits, conflicts;   /* since the broker started */
	uint64_t uptime_ms;
	uint64_t leases;	       /* leases in force */
};
int shma_broker_stats(shma_conn *c, struct shma_broker_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* SHMA_H */
