/* harness.c - a real broker for tests (see harness.h). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int harness_exe_dir(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (n < 0)
		return -errno;
	self[n] = 0;
	slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	*slash = 0;
	if ((size_t)snprintf(out, len, "%s", self) >= len)
		return -ENAMETOOLONG;
	return 0;
}

static int broker_path(char *out, size_t len)
{
	char dir[PATH_MAX];
	char *slash;
	int err;

	if (getenv("SHMA_BROKER")) {
		snprintf(out, len, "%s", getenv("SHMA_BROKER"));
		return 0;
	}
	err = harness_exe_dir(dir, sizeof(dir));
	if (err)
		return err;
	/* BUILD/tests/<kind>/binary or BUILD/bench/binary -> BUILD/shma-broker:
	 * the nearest directory above that has one */
	for (int i = 0; i < 2; i++) {
		slash = strrchr(dir, '/');
		if (!slash)
			return -ENOENT;
		*slash = 0;
		if ((size_t)snprintf(out, len, "%s/shma-broker", dir) >= len)
			return -ENAMETOOLONG;
		if (access(out, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

static void rm_rf(const char *dir)
{
	char cmd[512];

	/* the directory is ours (mkdtemp); its name has no shell characters */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "harness: could not remove %s\n", dir);
}

pid_t harness_spawn(const struct harness *h, const char *log)
{
	char broker[PATH_MAX], cfg[300];
	pid_t parent = getpid(), pid;
	int err = broker_path(broker, sizeof(broker));

	if (err) {
		fprintf(stderr, "harness: shma-broker not found next to the test (set SHMA_BROKER)\n");
		return err;
	}
	snprintf(cfg, sizeof(cfg), "%s/broker.json", h->dir);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		/* the test may have died before the tie was made */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(126);
		if (fd >= 0)
			dup2(fd, STDERR_FILENO);
		execl(broker, "shma-broker", "-c", cfg, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Start the broker on h's configuration and wait until it accepts
 * connections. */
static int spawn(struct harness *h)
{
	pid_t pid = harness_spawn(h, h->log);

	if (pid < 0)
		return pid;
	h->pid = pid;
	/* ready when the socket accepts a connection */
	for (int i = 0; i < 1000; i++) {
		struct tclient c;
		int status;

		if (tclient_connect(&c, h->socket) == 0) {
			tclient_close(&c);
			return 0;
		}
		if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
			fprintf(stderr, "harness: shma-broker exited at start (status %d); log %s\n",
				status, h->log);
			h->pid = -1;
			return -ECHILD;
		}
		sleep_ms(10);
	}
	fprintf(stderr, "harness: shma-broker did not come up; log %s\n", h->log);
	harness_kill(h);
	return -ETIMEDOUT;
}

int harness_start(struct harness *h, const char *extra_json)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char cfgpath[300];
	json_t *cfg, *extra;
	json_error_t jerr;
	int err;

	memset(h, 0, sizeof(*h));
	h->pid = -1;
	snprintf(h->dir, sizeof(h->dir), "%s/shma-test-XXXXXX", tmp);
	if (!mkdtemp(h->dir)) {
		h->dir[0] = 0;
		return -errno;
	}
	snprintf(h->socket, sizeof(h->socket), "%s/run/broker.sock", h->dir);
	snprintf(h->endpoint, sizeof(h->endpoint), "ipc://%s/run/inval.ipc", h->dir);
	snprintf(h->log, sizeof(h->log), "%s/broker.log", h->dir);
	snprintf(cfgpath, sizeof(cfgpath), "%s/broker.json", h->dir);

	cfg = json_pack("{s:s+,s:s+,s:s,s:s,s:s}", "runtime_dir", h->dir, "/run", "data_dir",
			h->dir, "/data", "pool_size", "256MiB", "block_size", "64KiB", "log_level",
			"debug");
	if (extra_json) {
		extra = json_loads(extra_json, 0, &jerr);
		if (!extra) {
			fprintf(stderr, "harness: bad extra config: %s\n", jerr.text);
			json_decref(cfg);
			harness_cleanup(h);
			return -EINVAL;
		}
		json_object_update(cfg, extra);
		json_decref(extra);
	}
	err = json_dump_file(cfg, cfgpath, 0);
	json_decref(cfg);
	if (err) {
		harness_cleanup(h);
		return -EIO;
	}
	err = spawn(h);
	if (err) { /* say why, then leave nothing behind */
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "tail -5 '%s' >&2", h->log);
		if (system(cmd) != 0)
			fprintf(stderr, "harness: no broker log\n");
		harness_cleanup(h);
	}
	return err;
}

int harness_restart(struct harness *h)
{
	if (h->pid > 0 || !h->dir[0])
		return -EINVAL;
	return spawn(h);
}

static int wait_exit(pid_t pid, int timeout_ms, int *status)
{
	for (int t = 0; t < timeout_ms; t += 10) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0)
			return -errno;
		sleep_ms(10);
	}
	return -ETIMEDOUT;
}

int harness_stop(struct harness *h, bool *socket_left)
{
	int status = 0, ret = -1;
	struct stat sb;

	if (h->pid > 0) {
		kill(h->pid, SIGTERM);
		if (wait_exit(h->pid, 20000, &status) == 0)
			ret = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		else
			harness_kill(h);
		h->pid = -1;
	}
	if (socket_left)
		*socket_left = stat(h->socket, &sb) == 0;
	if (ret != 0 && h->dir[0]) {
		/* keep the broker's words for the test's output */
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "tail -20 '%s' >&2", h->log);
		if (system(cmd) != 0)
			fprintf(stderr, "harness: no broker log\n");
	}
	harness_cleanup(h);
	return ret;
}

void harness_kill(struct harness *h)
{
	int status;

	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, &status, 0);
		h->pid = -1;
	}
}

void harness_cleanup(struct harness *h)
{
	if (h->dir[0]) {
		rm_rf(h->dir);
		h->dir[0] = 0;
	}
}

/* ---- client -------------------------------------------------------------- */

int tclient_connect(struct tclient *c, const char *socket_path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	c->pool_fd = -1;
	c->max_message = PROTO_MIN_INLINE;
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(c->fd);
		c->fd = -1;
		return err;
	}
	return 0;
}

int tclient_open(struct tclient *c, const char *socket_path)
{
	int fds[PROTO_MAX_FDS], nfds = 0, err;
	json_t *r;

	err = tclient_connect(c, socket_path);
	if (err)
		return err;
	r = tclient_call(c, NULL, 0, fds, &nfds, "{\"op\":\"hello\",\"version\":%d}", PROTO_VERSION);
	if (!r || !reply_ok(r) || nfds != 1) {
		json_decref(r);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		tclient_close(c);
		return -EPROTO;
	}
	c->pool_fd = fds[0];
	c->max_message = (size_t)reply_int(r, "max_message");
	json_decref(r);
	return 0;
}

void tclient_close(struct tclient *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->pool_fd >= 0)
		close(c->pool_fd);
	c->fd = c->pool_fd = -1;
}

int tclient_send_raw(struct tclient *c, const void *buf, size_t len, const int *fds, int nfds)
{
	return proto_send_raw(c->fd, buf, len, fds, nfds, 0);
}

json_t *tclient_recv(struct tclient *c, int timeout_ms, int *fds_out, int *nfds_out)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	struct proto_msg m;
	json_error_t jerr;
	json_t *j;

	if (nfds_out)
		*nfds_out = 0;
	if (poll(&pfd, 1, timeout_ms) <= 0)
		return NULL;
	if (proto_recv(c->fd, 1 << 20, 256u << 20, &m) != 0)
		return NULL;
	j = json_loadb(m.text, m.len, 0, &jerr);
	if (fds_out && nfds_out) {
		while (m.nfds)
			fds_out[(*nfds_out)++] = proto_msg_take_fd(&m, 0);
	}
	proto_msg_free(&m);
	return j;
}

json_t *tclient_call(struct tclient *c, const int *fds, int nfds, int *fds_out, int *nfds_out,
		     const char *fmt, ...)
{
	char *text;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	n = proto_send(c->fd, text, (size_t)n, c->max_message, fds, nfds);
	free(text);
	if (n < 0)
		return NULL;
	return tclient_recv(c, 30000, fds_out, nfds_out);
}

bool reply_ok(const json_t *r)
{
	return r && json_is_true(json_object_get(r, "ok"));
}

const char *reply_code(const json_t *r)
{
	const char *s = json_string_value(json_object_get(json_object_get(r, "error"), "code"));

	return s ? s : "";
}

long long reply_int(const json_t *r, const char *key)
{
	return json_integer_value(json_object_get(r, key));
}

int test_memfd(const void *data, size_t len)
{
	int fd = memfd_create("shma-test", MFD_CLOEXEC);
	size_t done = 0;

	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t w = write(fd, (const char *)data + done, len - done);

		if (w <= 0) {
			close(fd);
			return -EIO;
		}
		done += (size_t)w;
	}
	return fd;
}
