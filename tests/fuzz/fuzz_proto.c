/* fuzz_proto.c - libFuzzer harness for proto_recv (libshm/proto.c).
 *
 * The first byte of the input picks the framing around the rest, the
 * datagram's text:
 *   bits 0-2  how many descriptors ride along (0..7; more than proto_recv
 *             takes, PROTO_MAX_FDS + 1, is allowed)
 *   bit 3     the receiver's inline limit: 64 bytes instead of 4096
 *   bit 4     the first descriptor is a pipe instead of a memfd
 *   bit 5     the receiver's big-message limit: 16 bytes instead of 1 MiB
 * The memfd holds the whole text, so {"big":N} envelopes with N up to its
 * length can be honoured.  The datagram goes through a
 * socketpair(AF_UNIX, SOCK_SEQPACKET) and proto_recv takes it; afterwards no
 * descriptor may be left open (checked: the lowest free descriptor must be
 * the same as before the run).
 */
#include "proto.h"
#include "shma.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sv[2] = { -1, -1 };

static void die(const char *what)
{
	fprintf(stderr, "fuzz_proto: %s (errno %d)\n", what, errno);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int sz = 1 << 20;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		die("socketpair failed");
	/* room for the largest datagram a run sends */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	return 0;
}

/* One datagram with nfds (<= 7) descriptors: proto_send_raw stops at
 * PROTO_MAX_FDS + 1, and the receiver must cope with more. */
static int send_dgram(const char *buf, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 7)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (nfds) {
		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(sv[0], &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int lowest_free_fd(void)
{
	int fd = dup(sv[1]);

	if (fd < 0)
		die("dup failed");
	close(fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fds[7], nfds, pfd[2], i, err, before;
	size_t max_inline, max_big;
	struct proto_msg m;
	const char *text;
	size_t len;

	if (size < 1 || size > 65536)
		return 0;
	nfds = data[0] & 7;
	max_inline = data[0] & 8 ? 64 : PROTO_MIN_INLINE;
	max_big = data[0] & 32 ? 16 : (size_t)1 << 20;
	text = (const char *)data + 1;
	len = size - 1;

	before = lowest_free_fd();
	for (i = 0; i < nfds; i++) {
		if (i == 0 && (data[0] & 16)) {
			if (pipe2(pfd, O_CLOEXEC))
				die("pipe2 failed");
			close(pfd[1]);
			fds[i] = pfd[0];
			continue;
		}
		fds[i] = memfd_create("fuzz-proto", MFD_CLOEXEC);
		if (fds[i] < 0)
			die("memfd_create failed");
		if (i == 0 && len && write(fds[i], text, len) != (ssize_t)len)
			die("cannot fill the memfd");
	}
	err = send_dgram(text, len, fds, nfds);
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (err)
		return 0; /* the kernel refused it (e.g. too long): nothing to receive */

	err = proto_recv(sv[1], max_inline, max_big, &m);
	if (err == 0) {
		if (!m.text || m.text[m.len] != 0 || memchr(m.text, 0, m.len))
			die("an accepted message without a NUL-terminated, NUL-free text");
		if (m.nfds < 0 || m.nfds > PROTO_MAX_FDS)
			die("an accepted message with too many fds");
		if (m.len > max_inline && m.len > max_big)
			die("an accepted message longer than both limits");
	} else if (err != 1 && err != -EMSGSIZE && err != SHMA_EPROTOCOL) {
		fprintf(stderr, "fuzz_proto: proto_recv: %d\n", err);
		die("proto_recv failed with an unexpected code");
	}
	proto_msg_free(&m);
	if (lowest_free_fd() != before)
		die("a descriptor leaked");
	return 0;
}
