/* config.h - shma-broker configuration: JSON (jansson), validated whole.
 *
 * A configuration is read from a file (shma-broker -c FILE) or from the
 * embedded default (config/broker.json, compiled in).  Every key is optional
 * and has a default; an unknown key, a wrong type, an out-of-range value or a
 * syntax error rejects the whole configuration with a config_error saying
 * where (file:line:column) and which key.  docs/CONFIG.md documents each key.
 */
#ifndef SHMA_BROKER_CONFIG_H
#define SHMA_BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

struct id_list {
	uint32_t *ids; /* owned */
	size_t n;
};

struct broker_config {
	char *runtime_dir; /* directory for the socket and the ipc endpoint */
	char *socket_path; /* absolute (a relative value is taken under runtime_dir) */
	mode_t socket_mode;
	int64_t socket_gid; /* group of the socket file, or -1: the broker's */
	char *publish;	    /* ZeroMQ endpoint of the invalidation PUB socket */
	uint64_t pool_size; /* bytes, multiple of 4 KiB */
	uint64_t block_size; /* default block size of new arrays: power of two >= 4 KiB */
	uint64_t keep_revisions; /* retention: the newest N revisions, N >= 1 */
	uint64_t keep_ms;	 /* ... and every revision younger than this */
	uint32_t max_clients;
	uint32_t max_message; /* largest inline protocol message, bytes */
	uint32_t max_arrays;
	uint64_t max_commit_bytes; /* page data in one commit */
	struct id_list rw_uids, rw_gids, ro_uids, ro_gids; /* access control */
	enum log_level log_level;
	char *data_dir; /* durable store directory (absolute), or NULL: memory only */
	bool durability_async; /* commits acknowledged before fsync (the store syncs ~1/s) */
	uint64_t store_size;   /* bytes the store's file may hold, 1 MiB .. 1 TiB */
};

struct config_error {
	char source[256]; /* file name, or "<default>" */
	int line, column; /* 1-based; 0 if unknown */
	char key[128];	  /* dotted path of the offending key, e.g. "pool.size"; "" if none */
	char text[256];	  /* what is wrong */
};

/* The embedded default configuration's JSON text (config/broker.json). */
extern const char config_default_json[];

/* Parse and validate a configuration.  On success fills *cfg (owned: free
 * with config_free) and returns 0; on failure returns -EINVAL (or -errno for
 * a file that cannot be read, -ENOMEM) with *err filled and *cfg untouched.
 * Environment: runtime_dir defaults to $XDG_RUNTIME_DIR/shma if that is set,
 * else /tmp/shma-<uid>; data_dir (null in the configuration) to
 * $XDG_STATE_HOME/shma if that is set, else $HOME/.local/state/shma, else the
 * load fails (only absolute values of these variables count). */
int config_load_file(const char *path, struct broker_config *cfg, struct config_error *err);
int config_load_text(const char *text, size_t len, const char *source,
		     struct broker_config *cfg, struct config_error *err);
void config_free(struct broker_config *cfg);

/* "file:line:column: key: text" (or without the parts that are unknown). */
void config_error_format(const struct config_error *err, char *buf, size_t len);

/* May a peer with this uid and these groups (primary and supplementary, from
 * SO_PEERCRED/SO_PEERGROUPS) connect, and with write access?  RW if the uid is
 * the broker's own or in rw_uids, or a group is in rw_gids; else RO if the
 * uid is in ro_uids or a group in ro_gids; else NONE.  Empty lists grant
 * nothing (so the default lets only the broker's own uid in). */
enum access { ACCESS_NONE, ACCESS_RO, ACCESS_RW };
enum access config_access(const struct broker_config *cfg, uid_t uid, const gid_t *gids,
			  size_t ngids, uid_t broker_uid);

#endif
