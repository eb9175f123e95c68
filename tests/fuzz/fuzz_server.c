/* fuzz_server.c - libFuzzer harness for the broker's request handling
 * (broker/server.c, catalog.c): requests from a hostile client.
 *
 * One broker (in memory, small pool, short retention) lives for the whole
 * run, in this process; each input is one client connection.  The input:
 *   byte 0    bit i (i < 7): the i-th request carries the data memfd
 *             (256 KiB of non-zero pages, for commits); bit 7: no automatic
 *             hello first
 *   the rest  requests separated by NUL bytes, each sent as one datagram
 * After each request the server runs until it is idle and every reply is
 * read (fds in replies are closed); at the end the connection closes.  The
 * broker must neither crash nor trip a sanitizer, whatever it is sent; the
 * state it keeps across inputs (arrays, revisions) makes later inputs meet
 * a catalog that is not empty.
 */
#include "config.h"
#include "log.h"
#include "proto.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DATA_BYTES (256u << 10)
#define MAX_REQUESTS 64

static struct broker_config cfg;
static struct server *srv;
static int data_fd = -1;

static void die(const char *what)
{
	fprintf(stderr, "fuzz_server: %s (errno %d)\n", what, errno);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[256], text[1024], errbuf[512];
	struct config_error cerr;
	sigset_t sigs;
	char *page;

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/shma-fuzz-server-XXXXXX", tmp);
	if (!mkdtemp(dir))
		die("mkdtemp failed");
	snprintf(text, sizeof(text),
		 "{\"runtime_dir\":\"%s\",\"data_dir\":false,\"pool_size\":\"64MiB\","
		 "\"block_size\":\"64KiB\",\"retention\":{\"revisions\":2,\"seconds\":0},"
		 "\"limits\":{\"clients\":8,\"arrays\":64,\"commit_bytes\":\"1MiB\"},"
		 "\"log_level\":\"error\"}", dir);
	if (config_load_text(text, strlen(text), "<fuzz>", &cfg, &cerr))
		die("bad configuration");
	log_set_level(cfg.log_level);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	if (server_new(&cfg, &srv, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "fuzz_server: %s\n", errbuf);
		die("server_new failed");
	}
	data_fd = memfd_create("fuzz-data", MFD_CLOEXEC);
	if (data_fd < 0 || ftruncate(data_fd, DATA_BYTES))
		die("memfd failed");
	page = mmap(NULL, DATA_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, data_fd, 0);
	if (page == MAP_FAILED)
		die("mmap failed");
	for (size_t i = 0; i < DATA_BYTES; i++)
		page[i] = (char)(1 + i / 4096);
	munmap(page, DATA_BYTES);
	return 0;
}

/* Let the server handle what is there, then read and drop every reply. */
static void settle(int sock)
{
	for (int round = 0; round < 8; round++) {
		char buf[1 << 16];
		char cbuf[CMSG_SPACE(16 * sizeof(int))];
		bool got = false;

		server_step(srv, 0);
		for (;;) {
			struct iovec iov = { buf, sizeof(buf) };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
					     .msg_controllen = sizeof(cbuf) };
			ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

			if (n <= 0)
				break;
			got = true;
			for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
				if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
					int *fds = (int *)CMSG_DATA(cm);
					size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

					for (size_t k = 0; k < nfd; k++)
						close(fds[k]);
				}
		}
		if (!got && round > 0)
			break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char hello[] = "{\"op\":\"hello\",\"version\":1}";
	unsigned flags = size ? data[0] : 0;
	size_t pos = size ? 1 : 0;
	int sv[2], nreq = 0;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		die("socketpair failed");
	if (server_connect_fd(srv, sv[0]))
		die("server_connect_fd failed");
	if (!(flags & 0x80)) {
		proto_send_raw(sv[1], hello, strlen(hello), NULL, 0, MSG_DONTWAIT);
		settle(sv[1]);
	}
	while (pos < size && nreq < MAX_REQUESTS) {
		const uint8_t *end = memchr(data + pos, 0, size - pos);
		size_t len = end ? (size_t)(end - (data + pos)) : size - pos;
		bool with_fd = nreq < 7 && (flags >> nreq & 1);

		if (len)
			proto_send_raw(sv[1], (const char *)data + pos, len, with_fd ? &data_fd : NULL,
				       with_fd ? 1 : 0, MSG_DONTWAIT);
		settle(sv[1]);
		pos += len + 1;
		nreq++;
	}
	close(sv[1]);
	settle(-1);
	return 0;
}
