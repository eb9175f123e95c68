/* proto.h - the broker protocol's framing (internal; shared by the broker
 * and the client).  docs/PROTOCOL.md is the full description.
 *
 * A message is one SOCK_SEQPACKET datagram holding JSON text (UTF-8, no NUL),
 * with up to PROTO_MAX_FDS file descriptors attached (SCM_RIGHTS).  A text
 * longer than the peer's inline limit travels in a sealed memfd instead: the
 * datagram is then exactly {"big":N} (N its length in bytes) and the memfd
 * is the first descriptor, followed by the message's own.
 */
#ifndef SHMA_PROTO_H
#define SHMA_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#define PROTO_VERSION 1
#define PROTO_MAX_FDS 4
#define PROTO_MIN_INLINE 4096 /* every peer accepts inline messages this long */

struct proto_msg {
	char *text; /* NUL-terminated; owned */
	size_t len;
	int fds[PROTO_MAX_FDS + 1]; /* owned: closed by proto_msg_free (one more
				     * while a big message's memfd is in) */
	int nfds;
};

void proto_msg_init(struct proto_msg *m);
/* Free the text and close the fds still held. */
void proto_msg_free(struct proto_msg *m);
/* Take fd i out of m (the caller owns it now). */
int proto_msg_take_fd(struct proto_msg *m, int i);

/* Receive one message.  Texts longer than max_inline must come in a memfd,
 * and no text may exceed max_big.  Returns 0, 1 at end of stream, -EAGAIN on
 * a non-blocking socket with nothing to read, -EMSGSIZE (too long: the
 * message is consumed and dropped), SHMA_EPROTOCOL (too many fds, a bad
 * envelope, a NUL in the text: dropped), or -errno. */
int proto_recv(int sock, size_t max_inline, size_t max_big, struct proto_msg *m);

/* Scratch memory a message is received into before it is copied out at its
 * own size: a connection keeps one, so that receiving does not allocate and
 * free max_inline bytes each time.  Starts as { NULL, 0 }. */
struct proto_rbuf {
	char *p;
	size_t cap;
};
void proto_rbuf_free(struct proto_rbuf *b);
/* proto_recv with the scratch memory b (grown as needed). */
int proto_recv_buf(int sock, struct proto_rbuf *b, size_t max_inline, size_t max_big,
		   struct proto_msg *m);

/* Prepare text for sending to a peer whose inline limit is max_inline: if it
 * fits, *env is NULL and *bigfd -1; else *env is the envelope text (static
 * storage of the caller: env_buf) and *bigfd a sealed memfd holding the text
 * (owned by the caller). */
int proto_pack(const char *text, size_t len, size_t max_inline, char *env_buf,
	       size_t env_cap, int *bigfd);

/* Send one datagram of len bytes with nfds fds (borrowed).  flags: e.g.
 * MSG_DONTWAIT.  0, -EAGAIN, or -errno. */
int proto_send_raw(int sock, const char *buf, size_t len, const int *fds, int nfds, int flags);

/* proto_pack + proto_send_raw, blocking: for clients. */
int proto_send(int sock, const char *text, size_t len, size_t max_inline, const int *fds,
	       int nfds);

#endif
