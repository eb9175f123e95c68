/* proto.c - datagrams with JSON text and fds (see proto.h). */
#include "proto.h"
#include "shma.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

void proto_msg_init(struct proto_msg *m)
{
	m->text = NULL;
	m->len = 0;
	m->nfds = 0;
}

void proto_msg_free(struct proto_msg *m)
{
	for (int i = 0; i < m->nfds; i++)
		util_close(m->fds[i]);
	free(m->text);
	proto_msg_init(m);
}

int proto_msg_take_fd(struct proto_msg *m, int i)
{
	int fd = m->fds[i];

	memmove(&m->fds[i], &m->fds[i + 1], (size_t)(m->nfds - i - 1) * sizeof(int));
	m->nfds--;
	return fd;
}

/* Is text exactly {"big":N}?  Then *n = N. */
static bool is_envelope(const char *text, size_t len, uint64_t *n)
{
	static const char pfx[] = "{\"big\":";
	const size_t plen = sizeof(pfx) - 1;
	uint64_t v = 0;
	size_t i;

	if (len < plen + 2 || memcmp(text, pfx, plen) || text[len - 1] != '}')
		return false;
	for (i = plen; i < len - 1; i++) {
		if (text[i] < '0' || text[i] > '9' || i - plen >= 19)
			return false;
		v = v * 10 + (uint64_t)(text[i] - '0');
	}
	*n = v;
	return true;
}

static int read_big(struct proto_msg *m, uint64_t n, size_t max_big)
{
	struct stat sb;
	char *buf;
	int fd;

	if (m->nfds < 1 || n == 0 || n > max_big)
		return n > max_big ? -EMSGSIZE : SHMA_EPROTOCOL;
	fd = m->fds[0];
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size < n)
		return SHMA_EPROTOCOL;
	buf = malloc(n + 1);
	if (!buf)
		return -ENOMEM;
	if (util_pread_full(fd, buf, n, 0)) {
		free(buf);
		return SHMA_EPROTOCOL; /* shrunk under us: a broken sender */
	}
	buf[n] = 0;
	util_close(proto_msg_take_fd(m, 0));
	free(m->text);
	m->text = buf;
	m->len = n;
	return 0;
}

void proto_rbuf_free(struct proto_rbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->cap = 0;
}

int proto_recv_buf(int sock, struct proto_rbuf *b, size_t max_inline, size_t max_big,
		   struct proto_msg *m)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (PROTO_MAX_FDS + 1))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh = { 0 };
	struct iovec iov;
	struct cmsghdr *cm;
	uint64_t bign;
	ssize_t r;
	int err = 0;

	proto_msg_init(m);
	if (b->cap < max_inline + 1) {
		char *p = realloc(b->p, max_inline + 1);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = max_inline + 1;
	}
	iov.iov_base = b->p;
	iov.iov_len = max_inline + 1; /* one more: a longer text shows as truncated */
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof(cbuf.buf);
	do
		r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		err = errno == EWOULDBLOCK ? -EAGAIN : -errno;
		goto err_free;
	}
	/* collect fds first, so every error path closes them */
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *fds = (int *)(void *)CMSG_DATA(cm);

		for (int i = 0; i < n; i++) {
			if (m->nfds < PROTO_MAX_FDS + 1) /* + a big message's memfd */
				m->fds[m->nfds++] = fds[i];
			else {
				util_close(fds[i]);
				err = SHMA_EPROTOCOL;
			}
		}
	}
	if (r == 0 && m->nfds == 0)
		return 1; /* end of stream */
	if (mh.msg_flags & MSG_CTRUNC)
		err = SHMA_EPROTOCOL;
	if ((size_t)r > max_inline || (mh.msg_flags & MSG_TRUNC))
		err = err ? err : -EMSGSIZE;
	if (err)
		goto err_free;
	m->text = malloc((size_t)r + 1); /* its own size: most are small */
	if (!m->text) {
		err = -ENOMEM;
		goto err_free;
	}
	memcpy(m->text, b->p, (size_t)r);
	m->len = (size_t)r;
	m->text[m->len] = 0;
	if (memchr(m->text, 0, m->len)) {
		err = SHMA_EPROTOCOL;
		goto err_free;
	}
	if (is_envelope(m->text, m->len, &bign)) {
		err = read_big(m, bign, max_big);
		if (err)
			goto err_free;
	}
	if (m->nfds > PROTO_MAX_FDS) {
		err = SHMA_EPROTOCOL;
		goto err_free;
	}
	return 0;

err_free:
	proto_msg_free(m);
	return err;
}

int proto_recv(int sock, size_t max_inline, size_t max_big, struct proto_msg *m)
{
	struct proto_rbuf b = { NULL, 0 };
	int r = proto_recv_buf(sock, &b, max_inline, max_big, m);

	proto_rbuf_free(&b);
	return r;
}

int proto_pack(const char *text, size_t len, size_t max_inline, char *env_buf,
	       size_t env_cap, int *bigfd)
{
	const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
	int fd, err;

	*bigfd = -1;
	if (len <= max_inline)
		return 0;
	fd = memfd_create("shma-msg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	err = util_pwrite_full(fd, text, len, 0);
	if (err)
		goto err_close;
	/* the receiver may trust the size and content it sees */
	if (fcntl(fd, F_ADD_SEALS, seals) < 0) {
		err = -errno;
		goto err_close;
	}
	snprintf(env_buf, env_cap, "{\"big\":%zu}", len);
	*bigfd = fd;
	return 0;

err_close:
	util_close(fd);
	return err;
}

int proto_send_raw(int sock, const char *buf, size_t len, const int *fds, int nfds, int flags)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * (PROTO_MAX_FDS + 1))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r;

	if (nfds < 0 || nfds > PROTO_MAX_FDS + 1)
		return -EINVAL;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
	}
	do
		r = sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return 0;
}

int proto_send(int sock, const char *text, size_t len, size_t max_inline, const int *fds,
	       int nfds)
{
	char env[64];
	int all[PROTO_MAX_FDS + 1], bigfd, err;

	if (nfds > PROTO_MAX_FDS)
		return -EINVAL;
	err = proto_pack(text, len, max_inline, env, sizeof(env), &bigfd);
	if (err)
		return err;
	if (bigfd < 0)
		return proto_send_raw(sock, text, len, fds, nfds, 0);
	all[0] = bigfd;
	if (nfds)
		memcpy(all + 1, fds, sizeof(int) * (size_t)nfds);
	err = proto_send_raw(sock, env, strlen(env), all, nfds + 1, 0);
	util_close(bigfd);
	return err;
}
