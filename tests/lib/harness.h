/* harness.h - start and stop a real shma-broker for tests, and talk to it.
 *
 * harness_start() makes a private temporary directory, writes a
 * configuration there (the caller's JSON fragment over a few defaults: the
 * runtime directory and the durable store's data directory in the temporary
 * one, a small pool, debug logging to broker.log), starts build/.../shma-broker on it and waits until its
 * socket accepts connections.  harness_stop() sends SIGTERM, waits (SIGKILL
 * after a timeout), checks the socket file is gone and removes the
 * directory.  Nothing is left behind, nothing uses fixed global paths; a
 * broker dies with the test process that started it, even when that one
 * crashes (harness_spawn).
 */
#ifndef SHMA_TEST_HARNESS_H
#define SHMA_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "proto.h"

struct harness {
	char dir[256];	   /* the temporary directory */
	char socket[300];  /* the broker's socket path */
	char endpoint[320]; /* its invalidation endpoint (ipc://...) */
	char log[300];	   /* its stderr */
	pid_t pid;
};

/* Start a broker.  extra_json: a JSON object whose keys override the test
 * defaults (e.g. "{\"retention\":{\"revisions\":2}}"), or NULL.  The broker
 * binary is $SHMA_BROKER, or the build directory's (found above the test or
 * benchmark binary).  Returns 0 or -errno; prints why on failure (the
 * broker log's last lines) and then removes the directory. */
int harness_start(struct harness *h, const char *extra_json);
/* Stop it (SIGTERM); returns its exit status (0 for a clean stop), or -1 if
 * it had to be killed; *socket_left tells whether the socket file stayed. */
int harness_stop(struct harness *h, bool *socket_left);
/* Kill it with SIGKILL and reap it (crash tests); the directory stays until
 * harness_stop or harness_cleanup. */
void harness_kill(struct harness *h);
/* Start the broker again on the same directory and configuration (after
 * harness_kill): it recovers from the store in <dir>/data.  0 or -errno. */
int harness_restart(struct harness *h);
/* Remove the directory (after harness_kill). */
void harness_cleanup(struct harness *h);
/* Start a shma-broker (found as harness_start finds it) on h's
 * configuration, its stderr appended to log, without waiting for it (nor
 * recording it in h): its pid, or -errno.  It dies with the calling thread
 * (PR_SET_PDEATHSIG, SIGKILL), so a test process that crashes or is killed
 * leaves no broker running: call it from the test's main thread.  Every
 * broker the harness starts is started this way. */
pid_t harness_spawn(const struct harness *h, const char *log);
/* The directory of the running program, in out: 0 or -errno. */
int harness_exe_dir(char *out, size_t len);

/* A raw protocol client. */
struct tclient {
	int fd;
	int pool_fd; /* from hello, or -1 */
	size_t max_message;
};

/* Connect (no hello).  0 or -errno. */
int tclient_connect(struct tclient *c, const char *socket_path);
/* Connect and say hello; the pool fd is kept in c->pool_fd. */
int tclient_open(struct tclient *c, const char *socket_path);
void tclient_close(struct tclient *c);
/* Send a request (JSON text, printf-style) with fds; wait for the reply and
 * parse it.  Returns the reply (owned) or NULL if the connection ended;
 * reply fds, if any, go to fds_out (closed if NULL). */
json_t *tclient_call(struct tclient *c, const int *fds, int nfds, int *fds_out, int *nfds_out,
		     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Send raw bytes as one datagram. */
int tclient_send_raw(struct tclient *c, const void *buf, size_t len, const int *fds, int nfds);
/* Receive one reply (NULL at end of stream or on a timeout of ms). */
json_t *tclient_recv(struct tclient *c, int timeout_ms, int *fds_out, int *nfds_out);

/* Fields of a reply. */
bool reply_ok(const json_t *r);
const char *reply_code(const json_t *r); /* error code name, or "" */
long long reply_int(const json_t *r, const char *key);

/* A memfd holding len bytes of data (for commit page data). */
int test_memfd(const void *data, size_t len);

#endif
