/* pub.h - the invalidation publisher: one ZeroMQ PUB socket.
 *
 * The changes (create, delete, commit) made durable together are published as
 * one message of two frames: the topic "shma.inv" and a JSON text covering
 * their revisions (docs/PROTOCOL.md, section 12).  Sending
 * never blocks: PUB drops messages for subscribers past their high-water
 * mark, and subscribers detect the gap from the revision numbers.
 */
#ifndef SHMA_BROKER_PUB_H
#define SHMA_BROKER_PUB_H

#include <stddef.h>

#define PUB_TOPIC "shma.inv"

struct pub;

/* Bind a PUB socket to endpoint.  0 or -errno (message in errbuf). */
int pub_new(const char *endpoint, struct pub **out, char *errbuf, size_t errlen);
/* Publish one message (text borrowed); drops it, never blocks. */
void pub_send(struct pub *p, const char *text, size_t len);
void pub_free(struct pub **pp);

#endif
