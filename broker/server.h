/* server.h - shma-broker's main loop: the UNIX socket, clients, requests,
 * invalidations.
 *
 * One thread does everything (epoll): accept, read a request, answer it,
 * publish what changed.  Replies are sent without blocking; a client that
 * does not read its replies has them queued, up to a bound, and is then
 * disconnected, so a slow or stuck client never holds up the others.
 */
#ifndef SHMA_BROKER_SERVER_H
#define SHMA_BROKER_SERVER_H

#include "config.h"

#include <stddef.h>

struct server;

/* Set up everything: runtime directory, page pool, catalog, listening
 * socket, invalidation publisher, signal handling (SIGTERM, SIGINT: clean
 * stop; SIGPIPE ignored).  The caller must have blocked SIGTERM and SIGINT.
 * On failure returns -errno with a message in errbuf, and leaves nothing
 * behind.  cfg is borrowed and must outlive the server. */
int server_new(const struct broker_config *cfg, struct server **out, char *errbuf,
	       size_t errlen);

/* Serve until SIGTERM or SIGINT.  0, or -errno on a fatal error. */
int server_run(struct server *s);

/* One pass of the loop: wait up to timeout_ms (-1: forever, 0: not at all)
 * for events, handle them and whatever else has arrived meanwhile (a few
 * more polls that do not wait), make the changes durable and answer.  0, 1 once
 * a stop was asked for (signal), or -errno on a fatal error.  For tests and
 * fuzzing, which drive the server from their own loop. */
int server_step(struct server *s, int timeout_ms);

/* Serve fd (a connected UNIX SOCK_SEQPACKET socket, consumed) as if it had
 * been accepted on the listening socket: credentials are checked the same
 * way.  0, or -errno (fd is then still the caller's). */
int server_connect_fd(struct server *s, int fd);

/* Disconnect every client, remove the socket file, free everything. */
void server_free(struct server **sp);

#endif
