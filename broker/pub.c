/* pub.c - the invalidation publisher (see pub.h). */
#include "pub.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

struct pub {
	void *ctx;
	void *sock;
	char *endpoint;
};

int pub_new(const char *endpoint, struct pub **out, char *errbuf, size_t errlen)
{
	struct pub *p = calloc(1, sizeof(*p));
	/* a subscriber that stops reading costs at most hwm queued messages
	 * (their text is shared between subscribers) */
	int linger = 0, hwm = 1000, err;

	if (!p)
		return -ENOMEM;
	p->endpoint = strdup(endpoint);
	p->ctx = zmq_ctx_new();
	if (!p->endpoint || !p->ctx) {
		err = -ENOMEM;
		snprintf(errbuf, errlen, "cannot create a ZeroMQ context");
		goto err_free;
	}
	p->sock = zmq_socket(p->ctx, ZMQ_PUB);
	if (!p->sock) {
		err = -zmq_errno();
		snprintf(errbuf, errlen, "cannot create a ZeroMQ PUB socket: %s",
			 zmq_strerror(zmq_errno()));
		goto err_term;
	}
	zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(p->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	if (zmq_bind(p->sock, endpoint) < 0) {
		err = -zmq_errno();
		snprintf(errbuf, errlen, "cannot bind the invalidation publisher to %s: %s",
			 endpoint, zmq_strerror(zmq_errno()));
		goto err_close;
	}
	*out = p;
	return 0;

err_close:
	zmq_close(p->sock);
err_term:
	zmq_ctx_term(p->ctx);
err_free:
	free(p->endpoint);
	free(p);
	return err;
}

void pub_send(struct pub *p, const char *text, size_t len)
{
	if (zmq_send(p->sock, PUB_TOPIC, strlen(PUB_TOPIC), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
	    zmq_send(p->sock, text, len, ZMQ_DONTWAIT) < 0)
		log_debug("invalidation not published: %s", zmq_strerror(zmq_errno()));
}

void pub_free(struct pub **pp)
{
	struct pub *p = *pp;

	if (!p)
		return;
	zmq_close(p->sock);
	zmq_ctx_term(p->ctx);
	/* an ipc:// endpoint is a socket file: leave nothing behind */
	if (!strncmp(p->endpoint, "ipc://", 6) && p->endpoint[6] != '@')
		unlink(p->endpoint + 6);
	free(p->endpoint);
	free(p);
	*pp = NULL;
}
