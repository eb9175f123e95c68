/* test_cli.c - the `shma` command-line tool (worker/cli.c) end to end: the
 * built binary, run as a child process against a real broker, its stdout,
 * stderr and exit status checked.
 *
 * Covered: every command and its --help, --json output, usage errors (exit
 * 2), an unreachable broker (exit 3), the socket from -S, $SHMA_SOCKET and
 * relative paths, values printed by get, ArrayRefs opened in this process,
 * .npy files written by NumPy itself imported, exported and read back by
 * NumPy (every supported dtype, C and Fortran order, format versions 1, 2
 * and 3), files NumPy writes that shma cannot hold, malformed files (each
 * with its message, nothing left created), standard input and output,
 * chunked commits, and the progress bar on a terminal (and its absence
 * elsewhere).
 *
 * NumPy comes from Debian's python3-numpy (`make deps`), run as
 * /usr/bin/python3 (another python3 on PATH may lack it); without it the
 * NumPy tests are skipped.  Each test starts its own broker; files live in
 * the broker's temporary directory, which harness_stop removes.
 */
#include "itest.h"

#include <limits.h>

#include "npy.h"
#include "shma.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif
#define PYTHON "/usr/bin/python3"
#define RUN_TIMEOUT_MS 60000

static struct harness broker;

static int teardown(void **state)
{
	(void)state;
	return it_teardown_harness(&broker);
}

/* ---- running the tool ------------------------------------------------------- */

struct run {
	int status;	   /* exit code, or 128 + signal */
	char *out, *err;   /* what it wrote (NUL-terminated, malloc'd) */
	size_t outlen, errlen;
	char *extra;	   /* what came out of runopt.extra_fd */
	size_t extralen;
};

struct runopt {
	const char *stdin_path; /* NULL: /dev/null */
	const char *env;	/* "NAME=value" to set, or NULL */
	const char *unset;	/* a variable to remove, or NULL */
	const char *cwd;	/* NULL: the broker's directory */
	int stderr_fd;		/* >= 0: the child's stderr (not captured) */
	int extra_fd;		/* >= 0: also read this until the child ends */
	bool no_socket;		/* do not pass -S */
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	free(r->extra);
	memset(r, 0, sizeof(*r));
}

static const char *shma_path(void)
{
	static char path[PATH_MAX + 8];
	char self[PATH_MAX];
	ssize_t n;

	if (path[0])
		return path;
	if (getenv("SHMA_CLI")) {
		snprintf(path, sizeof(path), "%s", getenv("SHMA_CLI"));
		return path;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = 0;
	/* BUILD/tests/integration/test_cli -> BUILD/shma */
	for (int i = 0; i < 3; i++)
		*strrchr(self, '/') = 0;
	snprintf(path, sizeof(path), "%s/shma", self);
	assert_int_equal(access(path, X_OK), 0);
	return path;
}

static void append(char **buf, size_t *len, const char *data, size_t n)
{
	*buf = realloc(*buf, *len + n + 1);
	assert_non_null(*buf);
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = 0;
}

/* Run argv[0..] (a NULL-terminated list, without the program name) with
 * options; fills r.  -S <the broker's socket> comes first unless
 * o->no_socket. */
static void run_argv(struct run *r, const struct runopt *o, const char *const *args)
{
	const char *argv[64];
	int out[2], err[2], n = 0;
	uint64_t end = it_now_ms() + RUN_TIMEOUT_MS;
	bool out_open = true, err_open = o->stderr_fd < 0, extra_open = o->extra_fd >= 0;
	const char *prog = shma_path(); /* here: the child must not assert */
	pid_t pid;
	int status;

	memset(r, 0, sizeof(*r));
	append(&r->out, &r->outlen, "", 0);
	append(&r->err, &r->errlen, "", 0);
	append(&r->extra, &r->extralen, "", 0);
	argv[n++] = "shma";
	if (!o->no_socket) {
		argv[n++] = "-S";
		argv[n++] = broker.socket;
	}
	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (o->extra_fd >= 0) /* a pty master: its last read must not wait */
		assert_int_equal(fcntl(o->extra_fd, F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int in = open(o->stdin_path ? o->stdin_path : "/dev/null", O_RDONLY);

		if (in < 0 || dup2(in, 0) < 0 || dup2(out[1], 1) < 0 ||
		    dup2(o->stderr_fd >= 0 ? o->stderr_fd : err[1], 2) < 0)
			_exit(126);
		if (o->env && putenv((char *)o->env))
			_exit(126);
		if (o->unset)
			unsetenv(o->unset);
		if (chdir(o->cwd ? o->cwd : broker.dir[0] ? broker.dir : "/tmp"))
			_exit(126);
		execv(prog, (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	while (out_open || err_open || extra_open) {
		struct pollfd pfd[3] = { { .fd = out_open ? out[0] : -1, .events = POLLIN },
					 { .fd = err_open ? err[0] : -1, .events = POLLIN },
					 { .fd = extra_open ? o->extra_fd : -1, .events = POLLIN } };
		char buf[65536];
		int left = (int)(end - it_now_ms());

		if (left <= 0) {
			kill(pid, SIGKILL);
			fail_msg("shma %s: no end after %d ms", args[0], RUN_TIMEOUT_MS);
		}
		if (poll(pfd, 3, left > 100 ? 100 : left) < 0 && errno != EINTR)
			fail_msg("poll: %s", strerror(errno));
		for (int k = 0; k < 3; k++) {
			ssize_t got;

			if (pfd[k].fd < 0 || !(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			got = read(pfd[k].fd, buf, sizeof(buf));
			if (got > 0) {
				if (k == 0)
					append(&r->out, &r->outlen, buf, (size_t)got);
				else if (k == 1)
					append(&r->err, &r->errlen, buf, (size_t)got);
				else
					append(&r->extra, &r->extralen, buf, (size_t)got);
			} else if (got == 0 || errno != EINTR) { /* a pty master says EIO */
				if (k == 0)
					out_open = false;
				else if (k == 1)
					err_open = false;
				else
					extra_open = false;
			}
		}
		/* a pty stays open after the child: stop once it is gone */
		if (extra_open && !out_open && !err_open &&
		    waitpid(pid, &status, WNOHANG) == pid) {
			for (;;) {
				ssize_t got = read(o->extra_fd, buf, sizeof(buf));

				if (got <= 0)
					break;
				append(&r->extra, &r->extralen, buf, (size_t)got);
			}
			goto reaped;
		}
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
reaped:
	close(out[0]);
	close(err[0]);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Run with -S and default options: shma ARGS... */
#define SHMA(r, ...) run_argv((r), &(struct runopt){ .stderr_fd = -1, .extra_fd = -1 }, \
			      (const char *const[]){ __VA_ARGS__, NULL })
#define SHMA_OPT(r, o, ...) run_argv((r), (o), (const char *const[]){ __VA_ARGS__, NULL })

static void show(const struct run *r, const char *what)
{
	fprintf(stderr, "%s: exit %d\n--- stdout:\n%s--- stderr:\n%s---\n", what, r->status,
		r->out, r->err);
}

/* The command must exit with `code`; stdout/stderr must hold the given
 * words (NULL: not checked). */
static void expect(const struct run *r, int code, const char *out_has, const char *err_has,
		   const char *what)
{
	if (r->status != code || (out_has && !strstr(r->out, out_has)) ||
	    (err_has && !strstr(r->err, err_has))) {
		show(r, what);
		if (out_has && !strstr(r->out, out_has))
			fprintf(stderr, "stdout lacks: %s\n", out_has);
		if (err_has && !strstr(r->err, err_has))
			fprintf(stderr, "stderr lacks: %s\n", err_has);
	}
	assert_int_equal(r->status, code);
	if (out_has)
		assert_non_null(strstr(r->out, out_has));
	if (err_has)
		assert_non_null(strstr(r->err, err_has));
}

/* Run, expect success, return stdout (caller frees). */
#define SHMA_OK(...)                                  \
	({                                            \
		struct run r_;                        \
		SHMA(&r_, __VA_ARGS__);               \
		expect(&r_, 0, NULL, NULL, "shma");   \
		free(r_.err);                         \
		free(r_.extra);                       \
		r_.out;                               \
	})

/* ---- files -------------------------------------------------------------------- */

static void path_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", broker.dir, name);
}

static void write_file(const char *name, const void *data, size_t len)
{
	char path[PATH_MAX];
	int fd;

	path_in(path, sizeof(path), name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* The whole of a file (malloc'd); *len its size. */
static char *read_file(const char *name, size_t *len)
{
	char path[PATH_MAX];
	struct stat sb;
	char *buf;
	int fd;

	path_in(path, sizeof(path), name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(read(fd, buf, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*len = (size_t)sb.st_size;
	return buf;
}

/* A .npy file made here (no NumPy needed): header + data. */
static void write_npy(const char *name, const char *descr, bool fortran, unsigned ndim,
		      const uint64_t *shape, const void *data, size_t len, unsigned major)
{
	char *buf = malloc(4096 + len);
	size_t hlen;

	assert_non_null(buf);
	assert_int_equal(npy_format_header(descr, fortran, ndim, shape, major, buf, 4096, &hlen), 0);
	memcpy(buf + hlen, data, len);
	write_file(name, buf, hlen + len);
	free(buf);
}

/* ---- NumPy -------------------------------------------------------------------- */

static bool have_numpy(void)
{
	static int have = -1;

	if (have < 0)
		have = system(PYTHON " -c 'import numpy' >/dev/null 2>&1") == 0;
	return have;
}

/* Run a Python script in the broker's directory; its exit status. */
static int python(const char *script)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		if (chdir(broker.dir))
			_exit(126);
		execl(PYTHON, "python3", "-c", script, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define NEED_NUMPY()                                                                   \
	do {                                                                           \
		if (!have_numpy()) {                                                   \
			fprintf(stderr, "%s: no NumPy for " PYTHON " (make deps): skipped\n", \
				__func__);                                             \
			it_stop(&broker);                                              \
			skip();                                                        \
		}                                                                      \
	} while (0)

/* ---- JSON --------------------------------------------------------------------- */

static json_t *parse_json(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

	if (!j)
		fprintf(stderr, "bad JSON (%s): %s\n", jerr.text, text);
	assert_non_null(j);
	return j;
}

/* Names in `ls --json`. */
static size_t ls_count(void)
{
	char *out = SHMA_OK("ls", "--json");
	json_t *j = parse_json(out);
	size_t n = json_array_size(json_object_get(j, "arrays"));

	json_decref(j);
	free(out);
	return n;
}

/* ---- tests: the command line -------------------------------------------------- */

static const char *const command_names[] = { "ls",  "stat", "create", "rm",	       "import",
					     "export", "ref", "get",	"broker-status" };

static void test_help(void **state)
{
	struct runopt o = { .stderr_fd = -1, .extra_fd = -1, .no_socket = true, .cwd = "/" };
	struct run r;

	(void)state;
	SHMA_OPT(&r, &o, "--help");
	expect(&r, 0, "Usage: shma", NULL, "--help");
	assert_non_null(strstr(r.out, "Exit status"));
	for (size_t i = 0; i < ARRAY_SIZE(command_names); i++)
		assert_non_null(strstr(r.out, command_names[i]));
	run_free(&r);
	for (size_t i = 0; i < ARRAY_SIZE(command_names); i++) {
		char want[64];

		snprintf(want, sizeof(want), "Usage: shma %s", command_names[i]);
		SHMA_OPT(&r, &o, command_names[i], "--help");
		expect(&r, 0, want, NULL, command_names[i]);
		assert_non_null(strstr(r.out, "--socket"));
		assert_non_null(strstr(r.out, "Exit status"));
		assert_int_equal(r.errlen, 0);
		run_free(&r);
		SHMA_OPT(&r, &o, command_names[i], "-h");
		expect(&r, 0, want, NULL, command_names[i]);
		run_free(&r);
		SHMA_OPT(&r, &o, "help", command_names[i]);
		expect(&r, 0, want, NULL, command_names[i]);
		run_free(&r);
	}
	SHMA_OPT(&r, &o, "--version");
	expect(&r, 0, "shma ", NULL, "--version");
	run_free(&r);
}

static void test_usage_errors(void **state)
{
	/* all refused before any connection: the socket does not exist */
	static const struct {
		const char *args[8];
		const char *err;
	} cases[] = {
		{ { NULL }, "Usage: shma" },
		{ { "frobnicate" }, "no command \"frobnicate\"" },
		{ { "help", "frobnicate" }, "no command \"frobnicate\"" },
		{ { "--bogus" }, "unknown option --bogus" },
		{ { "-S" }, "needs an argument" },
		{ { "ls", "--bogus" }, "unknown option --bogus" },
		{ { "ls", "-Z" }, "unknown option -Z" },
		{ { "create" }, "missing argument" },
		{ { "create", "a", "b", "--shape", "3" }, "too many arguments" },
		{ { "create", "a" }, "--shape is required" },
		{ { "create", "a", "--shape", "3,a" }, "bad --shape" },
		{ { "create", "a", "--shape", "(3, 4" }, "missing ')'" },
		{ { "create", "a", "--shape", "3", "--dtype", "<U3" }, "bad --dtype" },
		{ { "create", "a", "--shape", "3", "--dtype", "float128" }, "bad --dtype" },
		{ { "create", "a", "--shape", "3", "--order", "Z" }, "--order is C or F" },
		{ { "create", "a", "--shape", "3", "--block-size", "1000" }, "power of two" },
		{ { "create", "a", "--shape", "3", "--block-size" }, "needs an argument" },
		{ { "rm" }, "missing argument" },
		{ { "import", "x.npy" }, "missing argument" },
		{ { "import", "x.npy", "a", "--chunk", "lots" }, "--chunk" },
		{ { "export", "a" }, "missing argument" },
		{ { "export", "-n", "4", "a", "x.npy" }, "--npy-version is 1, 2 or 3" },
		{ { "ref" }, "missing argument" },
		{ { "ref", "--lease", "0", "a" }, "--lease" },
		{ { "get", "a[1" }, "an index ends with ']'" },
		{ { "get", "[1]" }, "expected an array name" },
		{ { "get", "a", "b" }, "too many arguments" },
		{ { "broker-status", "extra" }, "too many arguments" },
	};
	struct runopt o = { .stderr_fd = -1, .extra_fd = -1, .no_socket = true, .cwd = "/",
			    .env = "SHMA_SOCKET=/nonexistent/shma.sock" };
	struct run r;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		run_argv(&r, &o, cases[i].args);
		expect(&r, 2, NULL, cases[i].err, cases[i].args[0] ? cases[i].args[0] : "(none)");
		assert_int_equal(r.outlen, 0);
		run_free(&r);
	}
}

static void test_unreachable(void **state)
{
	struct runopt o = { .stderr_fd = -1, .extra_fd = -1, .no_socket = true, .cwd = "/tmp" };
	struct run r;

	(void)state;
	/* -S */
	SHMA_OPT(&r, &o, "-S", "/nonexistent/dir/broker.sock", "ls");
	expect(&r, 3, NULL, "cannot reach the broker at /nonexistent/dir/broker.sock", "ls");
	assert_non_null(strstr(r.err, "SHMA_SOCKET"));
	run_free(&r);
	/* $SHMA_SOCKET, for every command that needs the broker */
	o.env = "SHMA_SOCKET=/nonexistent/env.sock";
	SHMA_OPT(&r, &o, "broker-status");
	expect(&r, 3, NULL, "/nonexistent/env.sock", "broker-status");
	run_free(&r);
	SHMA_OPT(&r, &o, "get", "a[0]");
	expect(&r, 3, NULL, "/nonexistent/env.sock", "get");
	run_free(&r);
	SHMA_OPT(&r, &o, "create", "a", "--shape", "3");
	expect(&r, 3, NULL, "/nonexistent/env.sock", "create");
	run_free(&r);
	/* a relative path is made absolute */
	SHMA_OPT(&r, &o, "-S", "no-such.sock", "stat");
	expect(&r, 3, NULL, "/tmp/no-such.sock", "stat");
	run_free(&r);
	/* the default: $XDG_RUNTIME_DIR/shma/broker.sock */
	o.env = "XDG_RUNTIME_DIR=/nonexistent/xdg";
	o.unset = "SHMA_SOCKET";
	SHMA_OPT(&r, &o, "ls");
	expect(&r, 3, NULL, "/nonexistent/xdg/shma/broker.sock", "ls");
	run_free(&r);
}

/* ---- tests: the catalog ------------------------------------------------------- */

static void test_create_ls_stat_rm(void **state)
{
	struct run r;
	char *out;
	json_t *j, *a;

	(void)state;
	it_start(&broker, NULL);
	/* empty */
	out = SHMA_OK("ls");
	assert_string_equal(out, "");
	free(out);
	assert_int_equal(ls_count(), 0);

	SHMA(&r, "create", "-v", "m/x", "--shape", "1000,1000", "--dtype", "<f8");
	expect(&r, 0, "created \"m/x\" at revision 1", NULL, "create");
	run_free(&r);
	free(SHMA_OK("create", "m/y", "--shape", "(3, 4, 5)", "--dtype", "int16", "--order", "F",
		     "--block-size", "4KiB"));
	free(SHMA_OK("create", "z", "--shape", "()", "--dtype", ">c16"));
	free(SHMA_OK("create", "flags", "-s", "7x0", "-d", "bool"));

	/* the table */
	out = SHMA_OK("ls");
	assert_non_null(strstr(out, "NAME"));
	assert_non_null(strstr(out, "m/x    <f8    (1000, 1000)  C      7.6 MiB"));
	assert_non_null(strstr(out, "(3, 4, 5)"));
	assert_non_null(strstr(out, ">c16"));
	assert_non_null(strstr(out, "|b1"));
	free(out);
	/* patterns */
	out = SHMA_OK("ls", "m/*");
	assert_non_null(strstr(out, "m/x"));
	assert_non_null(strstr(out, "m/y"));
	assert_null(strstr(out, "flags"));
	free(out);

	/* ls --json */
	out = SHMA_OK("ls", "--json");
	j = parse_json(out);
	assert_int_equal(json_array_size(json_object_get(j, "arrays")), 4);
	assert_int_equal(json_integer_value(json_object_get(j, "revision")), 4);
	a = json_array_get(json_object_get(j, "arrays"), 1); /* sorted: flags, m/x, m/y, z */
	assert_string_equal(json_string_value(json_object_get(a, "name")), "m/x");
	assert_string_equal(json_string_value(json_object_get(a, "dtype")), "<f8");
	assert_string_equal(json_string_value(json_object_get(a, "order")), "C");
	assert_int_equal(json_integer_value(json_object_get(a, "nbytes")), 8000000);
	assert_int_equal(json_integer_value(json_array_get(json_object_get(a, "shape"), 1)), 1000);
	a = json_array_get(json_object_get(j, "arrays"), 2);
	assert_string_equal(json_string_value(json_object_get(a, "order")), "F");
	assert_string_equal(json_string_value(json_object_get(a, "dtype")), "<i2");
	assert_int_equal(json_integer_value(json_object_get(a, "block_size")), 4096);
	json_decref(j);
	free(out);

	/* stat */
	out = SHMA_OK("stat", "m/y");
	assert_non_null(strstr(out, "name:        m/y"));
	assert_non_null(strstr(out, "dtype:       <i2 (int16, little-endian)"));
	assert_non_null(strstr(out, "shape:       (3, 4, 5)"));
	assert_non_null(strstr(out, "order:       F"));
	assert_non_null(strstr(out, "block size:  4096 bytes"));
	assert_non_null(strstr(out, "blocks:      1, 0 stored"));
	assert_non_null(strstr(out, "created at:  revision 2"));
	free(out);
	out = SHMA_OK("stat", "--json", "z");
	j = parse_json(out);
	assert_true(json_is_object(j));
	assert_string_equal(json_string_value(json_object_get(j, "dtype")), ">c16");
	assert_int_equal(json_array_size(json_object_get(j, "shape")), 0);
	assert_int_equal(json_integer_value(json_object_get(j, "nbytes")), 16);
	assert_int_equal(json_integer_value(json_object_get(j, "blocks_stored")), 0);
	assert_int_equal(json_integer_value(json_object_get(j, "revision")), 4);
	json_decref(j);
	free(out);
	out = SHMA_OK("stat", "--json"); /* every array: a list */
	j = parse_json(out);
	assert_int_equal(json_array_size(j), 4);
	json_decref(j);
	free(out);
	out = SHMA_OK("stat");
	assert_non_null(strstr(out, "name:        flags"));
	assert_non_null(strstr(out, "name:        z"));
	free(out);

	/* refusals */
	SHMA(&r, "stat", "nosuch");
	expect(&r, 1, NULL, "shma: stat: no array \"nosuch\" at revision 4", "stat");
	run_free(&r);
	SHMA(&r, "create", "m/x", "--shape", "3");
	expect(&r, 1, NULL, "shma: create: m/x: ", "create exists");
	assert_non_null(strstr(r.err, "exists"));
	run_free(&r);
	SHMA(&r, "create", "/bad", "--shape", "3");
	expect(&r, 1, NULL, "/bad", "create bad name");
	run_free(&r);

	/* rm */
	SHMA(&r, "rm", "-v", "m/x", "z");
	expect(&r, 0, "deleted \"m/x\" at revision 5", NULL, "rm");
	assert_non_null(strstr(r.out, "deleted \"z\" at revision 6"));
	run_free(&r);
	assert_int_equal(ls_count(), 2);
	SHMA(&r, "rm", "m/x");
	expect(&r, 1, NULL, "shma: rm: no array \"m/x\"", "rm again");
	run_free(&r);
	free(SHMA_OK("rm", "-f", "m/x", "m/y"));
	assert_int_equal(ls_count(), 1);

	/* $SHMA_SOCKET instead of -S, and a relative -S */
	{
		char env[400];
		struct runopt o = { .stderr_fd = -1, .extra_fd = -1, .no_socket = true, .env = env };

		snprintf(env, sizeof(env), "SHMA_SOCKET=%s", broker.socket);
		SHMA_OPT(&r, &o, "ls");
		expect(&r, 0, "flags", NULL, "SHMA_SOCKET");
		run_free(&r);
		o.env = NULL;
		o.cwd = broker.dir;
		SHMA_OPT(&r, &o, "-S", "run/broker.sock", "ls");
		expect(&r, 0, "flags", NULL, "relative -S");
		run_free(&r);
	}
	it_stop(&broker);
}

static void test_broker_status(void **state)
{
	char *out;
	json_t *j;

	(void)state;
	it_start(&broker, NULL);
	free(SHMA_OK("create", "a", "--shape", "100"));
	free(SHMA_OK("create", "b", "--shape", "100"));
	out = SHMA_OK("broker-status");
	assert_non_null(strstr(out, "broker:          "));
	assert_non_null(strstr(out, broker.socket));
	assert_non_null(strstr(out, "pool:            0 B of 256.0 MiB used"));
	assert_non_null(strstr(out, "head revision:   2"));
	assert_non_null(strstr(out, "revisions kept:  "));
	assert_non_null(strstr(out, "arrays:          2 live"));
	assert_non_null(strstr(out, "clients:         1"));
	assert_non_null(strstr(out, "commits:         0, conflicts: 0"));
	free(out);
	out = SHMA_OK("broker-status", "--json");
	j = parse_json(out);
	assert_int_equal(json_integer_value(json_object_get(j, "head")), 2);
	assert_int_equal(json_integer_value(json_object_get(j, "arrays")), 2);
	assert_int_equal(json_integer_value(json_object_get(j, "pool_size")), 256 << 20);
	assert_int_equal(json_integer_value(json_object_get(j, "clients")), 1);
	assert_true(json_is_integer(json_object_get(j, "revisions_kept")));
	assert_true(json_is_integer(json_object_get(j, "commits")));
	assert_true(json_is_integer(json_object_get(j, "conflicts")));
	assert_true(json_is_integer(json_object_get(j, "uptime_ms")));
	assert_string_equal(json_string_value(json_object_get(j, "socket")), broker.socket);
	json_decref(j);
	free(out);
	it_stop(&broker);
}

/* ---- tests: values and refs --------------------------------------------------- */

static void test_get(void **state)
{
	static const int32_t i4[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
	static const uint64_t s34[2] = { 3, 4 }, s4[1] = { 4 }, s2[1] = { 2 }, s23[2] = { 2, 3 };
	/* >f8 0.5, -1.25, inf, nan (big-endian bytes) */
	static const unsigned char f8be[32] = { 0x3f, 0xe0, 0, 0, 0, 0, 0, 0,
						0xbf, 0xf4, 0, 0, 0, 0, 0, 0,
						0x7f, 0xf0, 0, 0, 0, 0, 0, 0,
						0x7f, 0xf8, 0, 0, 0, 0, 0, 0 };
	static const double c16[4] = { 1.0, 2.0, 0.0, -1.5 };
	static const unsigned char b1[2] = { 1, 0 };
	static const uint16_t f2[2] = { 0x2e66, 0x7bff }; /* 0.1, 65504 */
	static const unsigned char u2be[4] = { 0, 1, 0xff, 0xff };
	/* F order (2, 3): memory 0 3 1 4 2 5 shows as [[0 1 2] [3 4 5]] */
	static const int8_t f23[6] = { 0, 3, 1, 4, 2, 5 };
	int64_t *big = malloc(2000 * sizeof(*big));
	uint64_t s2000[1] = { 2000 };
	struct run r;
	char *out;
	json_t *j;

	(void)state;
	it_start(&broker, NULL);
	write_npy("i4.npy", "<i4", false, 2, s34, i4, sizeof(i4), 0);
	write_npy("f8.npy", ">f8", false, 1, s4, f8be, sizeof(f8be), 0);
	write_npy("c16.npy", "<c16", false, 1, s2, c16, sizeof(c16), 0);
	write_npy("b1.npy", "|b1", false, 1, s2, b1, sizeof(b1), 0);
	write_npy("f2.npy", "<f2", false, 1, s2, f2, sizeof(f2), 0);
	write_npy("u2.npy", ">u2", false, 1, s2, u2be, sizeof(u2be), 0);
	write_npy("f23.npy", "|i1", true, 2, s23, f23, sizeof(f23), 0);
	for (int i = 0; i < 2000; i++)
		big[i] = i;
	write_npy("big.npy", "<i8", false, 1, s2000, big, 2000 * sizeof(*big), 0);
	free(big);
	free(SHMA_OK("import", "i4.npy", "i4"));
	free(SHMA_OK("import", "f8.npy", "f8"));
	free(SHMA_OK("import", "c16.npy", "c16"));
	free(SHMA_OK("import", "b1.npy", "b1"));
	free(SHMA_OK("import", "f2.npy", "f2"));
	free(SHMA_OK("import", "u2.npy", "u2"));
	free(SHMA_OK("import", "f23.npy", "f23"));
	free(SHMA_OK("import", "big.npy", "big"));

	static const struct {
		const char *target, *want;
	} cases[] = {
		{ "i4", "[[ 0  1  2  3]\n [ 4  5  6  7]\n [ 8  9 10 11]]\n" },
		{ "i4[1]", "[4 5 6 7]\n" },
		{ "i4[1, 2]", "6\n" },
		{ "i4[-1, -1]", "11\n" },
		{ "i4[::-1, ::2]", "[[ 8 10]\n [ 4  6]\n [ 0  2]]\n" },
		{ "i4[..., 3]", "[ 3  7 11]\n" },
		{ "i4[1:1]", "[]\n" },
		{ "f8", "[  0.5 -1.25   inf   nan]\n" },
		{ "c16", "[1.0+2.0j 0.0-1.5j]\n" },
		{ "b1", "[ True False]\n" },
		{ "f2", "[    0.1 65500.0]\n" },
		{ "u2", "[    1 65535]\n" },
		{ "f23", "[[0 1 2]\n [3 4 5]]\n" },
		{ "f23[:, 1]", "[1 4]\n" },
		{ "big", "[   0    1    2 ... 1997 1998 1999]\n" },
		{ "big[:1000]", NULL }, /* 1000 items: not summarised */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		SHMA(&r, "get", cases[i].target);
		expect(&r, 0, NULL, NULL, cases[i].target);
		if (cases[i].want && strcmp(r.out, cases[i].want))
			fprintf(stderr, "get %s:\n%swant:\n%s", cases[i].target, r.out, cases[i].want);
		if (cases[i].want)
			assert_string_equal(r.out, cases[i].want);
		else
			assert_null(strstr(r.out, "..."));
		run_free(&r);
	}
	/* line wrapping, as NumPy at 75 columns */
	out = SHMA_OK("get", "big[:100]");
	for (char *line = out; *line;) {
		char *nl = strchr(line, '\n');

		assert_non_null(nl);
		assert_true(nl - line <= 75);
		line = nl + 1;
	}
	free(out);
	/* --all */
	out = SHMA_OK("get", "--all", "big");
	assert_null(strstr(out, "..."));
	assert_non_null(strstr(out, " 1000 1001 "));
	free(out);

	/* --json */
	static const struct {
		const char *target, *want;
	} jcases[] = {
		{ "i4", "[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]\n" },
		{ "i4[2, 0]", "8\n" },
		{ "f8", "[0.5, -1.25, \"inf\", \"nan\"]\n" },
		{ "c16", "[[1.0, 2.0], [0.0, -1.5]]\n" },
		{ "b1", "[true, false]\n" },
		{ "f23", "[[0, 1, 2], [3, 4, 5]]\n" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(jcases); i++) {
		SHMA(&r, "get", "--json", jcases[i].target);
		expect(&r, 0, NULL, NULL, jcases[i].target);
		assert_string_equal(r.out, jcases[i].want);
		json_decref(parse_json(r.out));
		run_free(&r);
	}
	SHMA(&r, "get", "--json", "big");
	expect(&r, 1, NULL, "2000 items", "get --json big");
	run_free(&r);
	out = SHMA_OK("get", "--json", "--all", "big");
	j = parse_json(out);
	assert_int_equal(json_array_size(j), 2000);
	assert_int_equal(json_integer_value(json_array_get(j, 1999)), 1999);
	json_decref(j);
	free(out);

	/* bad indexes are usage errors; a missing array is not */
	SHMA(&r, "get", "i4[3]");
	expect(&r, 2, NULL, "shma: get: i4[3]: ", "get out of bounds");
	assert_non_null(strstr(r.err, "(3, 4)"));
	run_free(&r);
	SHMA(&r, "get", "i4[::0]");
	expect(&r, 2, NULL, "i4[::0]", "get step 0");
	run_free(&r);
	SHMA(&r, "get", "i4[1, 2, 3]");
	expect(&r, 2, NULL, "i4[1, 2, 3]", "get too many");
	run_free(&r);
	SHMA(&r, "get", "nosuch[0]");
	expect(&r, 1, NULL, "shma: get: no array \"nosuch\" at revision", "get nosuch");
	run_free(&r);
	it_stop(&broker);
}

static void test_ref(void **state)
{
	static const int32_t i4[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
	static const uint64_t s34[2] = { 3, 4 };
	struct shma_view v;
	struct shma_ref ref;
	shma_array *a = NULL;
	char why[200], *out;
	json_t *j;
	struct run r;

	(void)state;
	it_start(&broker, NULL);
	write_npy("i4.npy", "<i4", false, 2, s34, i4, sizeof(i4), 0);
	free(SHMA_OK("import", "i4.npy", "m/i4"));

	out = SHMA_OK("ref", "m/i4[1:, ::-1]");
	assert_int_equal(shma_ref_decode(out, strlen(out), &ref, why, sizeof(why)), 0);
	assert_string_equal(ref.array, "m/i4");
	assert_string_equal(ref.socket, broker.socket);
	assert_string_equal(ref.dtype, "<i4");
	assert_int_equal(ref.revision, 1); /* the import's one commit creates and fills */
	assert_int_equal(ref.ndim, 2);
	assert_int_equal(ref.shape[0], 2);
	assert_int_equal(ref.shape[1], 4);
	assert_int_equal(ref.strides[0], 16);
	assert_int_equal(ref.strides[1], -4);
	assert_int_equal(ref.offset, 28);
	assert_int_equal(ref.lo, 16);
	assert_int_equal(ref.hi, 48);
	free(out);
	/* it opens here, onto the same data */
	assert_int_equal(shma_vm_install_handler(), 0); /* cmocka replaced it */
	assert_int_equal(shma_ref_open(&ref, 0, &a, &v), 0);
	for (uint64_t i = 0; i < 2; i++)
		for (uint64_t k = 0; k < 4; k++) {
			uint64_t idx[2] = { i, k };

			assert_int_equal(*(int32_t *)shma_view_ptr(&v, idx), (int)(4 * (i + 1) + 3 - k));
		}
	shma_close(&a);

	/* the whole array; a 0-d item */
	out = SHMA_OK("ref", "m/i4");
	assert_int_equal(shma_ref_decode(out, strlen(out), &ref, why, sizeof(why)), 0);
	assert_int_equal(ref.ndim, 2);
	assert_int_equal(ref.hi, 48);
	free(out);
	out = SHMA_OK("ref", "m/i4[2, 1]");
	assert_int_equal(shma_ref_decode(out, strlen(out), &ref, why, sizeof(why)), 0);
	assert_int_equal(ref.ndim, 0);
	assert_int_equal(ref.offset, 36);
	free(out);

	/* --lease keeps the revision for a while */
	free(SHMA_OK("ref", "--lease", "5", "m/i4[0]"));
	out = SHMA_OK("broker-status", "--json");
	j = parse_json(out);
	assert_int_equal(json_integer_value(json_object_get(j, "leases")), 1);
	json_decref(j);
	free(out);

	SHMA(&r, "ref", "m/i4[7]");
	expect(&r, 2, NULL, "m/i4[7]", "ref out of bounds");
	run_free(&r);
	SHMA(&r, "ref", "nosuch");
	expect(&r, 1, NULL, "no array \"nosuch\"", "ref nosuch");
	run_free(&r);
	it_stop(&broker);
}

/* ---- tests: .npy files ------------------------------------------------------- */

/* Files NumPy writes: every dtype shma holds, both byte orders, C and F
 * order, versions 1.0, 2.0 and 3.0, 0-d and empty arrays; imported, exported,
 * read back by NumPy and compared. */
static void test_numpy_roundtrip(void **state)
{
	static const char script_write[] =
		"import numpy as np\n"
		"rng = np.random.default_rng(7)\n"
		"dts = ['|b1','|i1','<i2','>i2','<i4','>i4','<i8','>i8','|u1','<u2','>u2','<u4',\n"
		"       '>u4','<u8','>u8','<f2','>f2','<f4','>f4','<f8','>f8','<c8','>c8','<c16','>c16']\n"
		"shapes = [(5,), (3, 4), (2, 3, 4), (), (0, 3), (1000, 37)]\n"
		"names = []\n"
		"k = 0\n"
		"for dt in dts:\n"
		"    for shape in shapes:\n"
		"        for order in 'CF':\n"
		"            if order == 'F' and len(shape) < 2: continue\n"
		"            n = int(np.prod(shape))\n"
		"            if dt == '|b1': a = rng.integers(0, 2, n).astype(bool)\n"
		"            elif dt[1] in 'iu': a = rng.integers(0, 100, n) - (50 if dt[1] == 'i' else 0)\n"
		"            elif dt[1] == 'f': a = rng.standard_normal(n) * 1000\n"
		"            else: a = rng.standard_normal(n) + 1j * rng.standard_normal(n)\n"
		"            a = a.astype(dt).reshape(shape, order=order)\n"
		"            if dt[1] in 'fc' and n > 2: a.flat[1] = np.nan; a.flat[2] = -np.inf\n"
		"            if order == 'F': a = np.asfortranarray(a)\n"
		"            version = (k % 3 + 1, 0)\n"
		"            name = 'np%d.npy' % k\n"
		"            with open(name, 'wb') as f:\n"
		"                np.lib.format.write_array(f, a, version=version)\n"
		"            names.append(name)\n"
		"            k += 1\n"
		"open('manifest', 'w').write('\\n'.join(names) + '\\n')\n";
	static const char script_check[] =
		"import numpy as np, sys\n"
		"bad = 0\n"
		"for name in open('manifest').read().split():\n"
		"    a = np.load(name); b = np.load('out_' + name)\n"
		"    with open('out_' + name, 'rb') as f:\n"
		"        v = np.lib.format.read_magic(f)\n"
		"        hdr = np.lib.format._read_array_header(f, v)\n"
		"    fortran = a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous\n"
		"    ok = (a.dtype == b.dtype and a.shape == b.shape and\n"
		"          np.array_equal(a, b, equal_nan=a.dtype.kind in 'fc') and\n"
		"          hdr[1] == fortran and v == (1, 0))\n"
		"    if not ok:\n"
		"        print('mismatch:', name, a.dtype, b.dtype, a.shape, b.shape, hdr, v)\n"
		"        bad += 1\n"
		"sys.exit(1 if bad else 0)\n";
	char *manifest, *name, *save;
	size_t len, count = 0;
	struct run r;

	(void)state;
	it_start(&broker, "{\"pool_size\":\"512MiB\"}");
	NEED_NUMPY();
	assert_int_equal(python(script_write), 0);
	manifest = read_file("manifest", &len);
	manifest[len] = 0;
	for (name = strtok_r(manifest, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
		char arr[64], out[80];

		snprintf(arr, sizeof(arr), "a/%.50s", name);
		snprintf(out, sizeof(out), "out_%.60s", name);
		SHMA(&r, "import", name, arr);
		expect(&r, 0, NULL, NULL, name);
		run_free(&r);
		SHMA(&r, "export", arr, out);
		expect(&r, 0, NULL, NULL, out);
		run_free(&r);
		count++;
	}
	free(manifest);
	assert_true(count > 200);
	assert_int_equal(python(script_check), 0);

	/* the order survives in the broker's catalog too */
	{
		char *o = SHMA_OK("stat", "--json", "a/np1.npy");
		json_t *j = parse_json(o);

		/* np1 is '|b1' (3, 4) C order, np2 the same F order */
		assert_string_equal(json_string_value(json_object_get(j, "order")), "C");
		json_decref(j);
		free(o);
		o = SHMA_OK("stat", "--json", "a/np2.npy");
		j = parse_json(o);
		assert_string_equal(json_string_value(json_object_get(j, "order")), "F");
		json_decref(j);
		free(o);
	}
	/* slices exported: NumPy agrees on what they hold */
	free(SHMA_OK("export", "a/np1.npy[::-1, 1:3]", "slice1.npy"));
	free(SHMA_OK("export", "--npy-version", "3", "a/np2.npy[1:, ::2]", "slice2.npy"));
	assert_int_equal(python("import numpy as np, sys\n"
				"a = np.load('np1.npy'); b = np.load('np2.npy')\n"
				"sys.exit(not (np.array_equal(np.load('slice1.npy'), a[::-1, 1:3]) and\n"
				"              np.array_equal(np.load('slice2.npy'), b[1:, ::2]) and\n"
				"              open('slice2.npy', 'rb').read(8) == b'\\x93NUMPY\\x03\\x00'))\n"),
			 0);
	/* get prints what NumPy holds */
	assert_int_equal(python("import numpy as np\n"
				"np.save('small.npy', np.array([[1, -2], [3, 40]], dtype='>i8'))\n"),
			 0);
	free(SHMA_OK("import", "small.npy", "small"));
	SHMA(&r, "get", "small");
	expect(&r, 0, "[[ 1 -2]\n [ 3 40]]\n", NULL, "get small");
	run_free(&r);
	it_stop(&broker);
}

/* What NumPy writes that shma cannot hold is refused, and says why. */
static void test_numpy_unsupported(void **state)
{
	static const struct {
		const char *expr, *err;
	} cases[] = {
		{ "np.array(['abc', 'de'])", "'<U3' (Unicode strings)" },
		{ "np.array([b'abc'])", "'|S3' (byte strings)" },
		{ "np.array([1, 'x', None], dtype=object)", "'|O' (Python objects)" },
		{ "np.array(['2024-01-01'], dtype='datetime64[ns]')", "datetimes" },
		{ "np.array([1], dtype='timedelta64[s]')", "timedeltas" },
		{ "np.zeros(3, dtype=[('a', '<f8'), ('b', '<i4')])", "structured dtypes" },
		{ "np.zeros(3, dtype=np.longdouble)", "long double" },
	};
	char script[512], file[32];
	struct run r;

	(void)state;
	it_start(&broker, NULL);
	NEED_NUMPY();
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		snprintf(file, sizeof(file), "u%zu.npy", i);
		snprintf(script, sizeof(script), "import numpy as np\nnp.save('%s', %s, "
			 "allow_pickle=True)\n", file, cases[i].expr);
		assert_int_equal(python(script), 0);
		SHMA(&r, "import", file, "x");
		expect(&r, 1, NULL, "unsupported dtype: ", cases[i].expr);
		assert_non_null(strstr(r.err, cases[i].err));
		assert_non_null(strstr(r.err, file));
		run_free(&r);
	}
	assert_int_equal(ls_count(), 0);
	it_stop(&broker);
}

/* Malformed files: each refused with a clear message, nothing created. */
static void test_malformed_files(void **state)
{
	static const char good_dict[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }";
	static const struct {
		const char *dict; /* NULL: raw bytes below */
		const char *raw;
		size_t rawlen;
		const char *err;
	} cases[] = {
#define RAW(s) NULL, s, sizeof(s) - 1
		{ RAW("PK\x03\x04 this is a zip"), "not a .npy file" },
		{ RAW("\x93NUMPY\x09\x00\x10\x00"), "unsupported format version: 9.0" },
		{ RAW("\x93NUMPY\x02\x00\xff\xff\xff\x7f"), "header too long" },
		{ RAW("\x93NUMPY\x01\x00\x40\x00{'descr'"), "truncated: the file ends inside its "
							      "header" },
		{ RAW(""), "truncated" },
#undef RAW
		{ "{'descr': '<f8', 'shape': (4,), }", NULL, 0, "bad header keys: the header has no "
								"'fortran_order'" },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), 'x': 1}", NULL, 0,
		  "bad header keys: unexpected key 'x'" },
		{ "{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (4,), }", NULL, 0,
		  "unsupported dtype: structured" },
		{ "{'descr': '<U8', 'fortran_order': False, 'shape': (4,), }", NULL, 0,
		  "unsupported dtype: '<U8'" },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (-4,), }", NULL, 0,
		  "bad shape: negative size -4" },
		{ "{'descr': '<f8', 'fortran_order': False, 'shape': (4,)", NULL, 0,
		  "bad header: expected ',' or '}'" },
		/* the data: 4 items promised, 3 there */
		{ good_dict, NULL, 24, "truncated: the header promises 32 bytes of data, the file "
				       "holds 24" },
	};
	unsigned char buf[4096];
	char file[32];
	struct run r;

	(void)state;
	it_start(&broker, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t len;

		if (cases[i].dict) {
			size_t n = strlen(cases[i].dict);

			memcpy(buf, "\x93NUMPY\x01\x00", 8);
			buf[8] = (unsigned char)(n + 1);
			buf[9] = 0;
			memcpy(buf + 10, cases[i].dict, n);
			buf[10 + n] = '\n';
			len = 11 + n;
			memset(buf + len, 0, cases[i].rawlen); /* data */
			len += cases[i].rawlen;
		} else {
			memcpy(buf, cases[i].raw, cases[i].rawlen);
			len = cases[i].rawlen;
		}
		snprintf(file, sizeof(file), "bad%zu.npy", i);
		write_file(file, buf, len);
		SHMA(&r, "import", file, "x");
		expect(&r, 1, NULL, cases[i].err, file);
		assert_non_null(strstr(r.err, "shma: import: "));
		assert_non_null(strstr(r.err, file));
		run_free(&r);
	}
	SHMA(&r, "import", "no-such-file.npy", "x");
	expect(&r, 1, NULL, "cannot open no-such-file.npy: No such file or directory", "missing");
	run_free(&r);

	/* truncated data through a pipe: found while copying; the array goes */
	{
		char path[PATH_MAX];
		double d[3] = { 1, 2, 3 };
		uint64_t shape[1] = { 4 };
		size_t hlen;
		char hdr[256];
		struct runopt o = { .stderr_fd = -1, .extra_fd = -1 };
		int p[2];
		pid_t pid;

		assert_int_equal(npy_format_header("<f8", false, 1, shape, 0, hdr, sizeof(hdr), &hlen),
				 0);
		path_in(path, sizeof(path), "fifo");
		assert_int_equal(mkfifo(path, 0600), 0);
		(void)p;
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) { /* the writer: a header and 3 of 4 items */
			int fd = open(path, O_WRONLY);

			if (fd < 0 || write(fd, hdr, hlen) != (ssize_t)hlen ||
			    write(fd, d, sizeof(d)) != (ssize_t)sizeof(d))
				_exit(1);
			_exit(0);
		}
		o.stdin_path = path;
		SHMA_OPT(&r, &o, "import", "-", "x");
		expect(&r, 1, NULL, "-: truncated: the header promises 32 bytes of data, the file "
			  "holds 24", "pipe");
		run_free(&r);
		waitpid(pid, NULL, 0);
	}
	assert_int_equal(ls_count(), 0);
	it_stop(&broker);
}

/* Standard input and output; --force; chunked commits. */
static void test_import_export_io(void **state)
{
	const size_t n = 1 << 20;
	unsigned char *data = malloc(n);
	uint64_t shape[2] = { 1024, 1024 };
	char path[PATH_MAX], *a, *b, *out;
	size_t alen, blen;
	long long commits;
	struct run r;
	json_t *j;

	(void)state;
	it_start(&broker, NULL);
	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 7 + i / 4099);
	write_npy("d.npy", "|u1", false, 2, shape, data, n, 0);

	/* 1 MiB committed 64 KiB at a time: 16 commits, the first creating it */
	SHMA(&r, "import", "-v", "--chunk", "64KiB", "d.npy", "d");
	expect(&r, 0, "imported d.npy as \"d\": |u1 (1024, 1024) C order, 1.0 MiB, revision 16",
	       NULL, "import chunks");
	run_free(&r);
	out = SHMA_OK("broker-status", "--json");
	j = parse_json(out);
	commits = json_integer_value(json_object_get(j, "commits"));
	assert_int_equal(commits, 16);
	json_decref(j);
	free(out);
	out = SHMA_OK("stat", "--json", "d");
	j = parse_json(out);
	assert_int_equal(json_integer_value(json_object_get(j, "blocks_stored")), 16);
	json_decref(j);
	free(out);

	/* exported: the same bytes, header and all */
	free(SHMA_OK("export", "d", "e.npy"));
	a = read_file("d.npy", &alen);
	b = read_file("e.npy", &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);
	/* to standard output */
	SHMA(&r, "export", "d", "-");
	expect(&r, 0, NULL, NULL, "export -");
	assert_int_equal(r.outlen, alen);
	assert_memory_equal(r.out, a, alen);
	run_free(&r);
	free(a);

	/* replace, from standard input */
	{
		struct runopt o = { .stderr_fd = -1, .extra_fd = -1 };

		for (size_t i = 0; i < n; i++)
			data[i] ^= 0x5a;
		write_npy("f.npy", "|u1", true, 2, shape, data, n, 2);
		path_in(path, sizeof(path), "f.npy");
		o.stdin_path = path;
		SHMA_OPT(&r, &o, "import", "-", "d");
		expect(&r, 1, NULL, "shma: import: array \"d\" exists (use --force to replace it)",
		       "import exists");
		run_free(&r);
		SHMA_OPT(&r, &o, "import", "--force", "-", "d");
		expect(&r, 0, NULL, NULL, "import --force -");
		run_free(&r);
	}
	out = SHMA_OK("stat", "--json", "d");
	j = parse_json(out);
	assert_string_equal(json_string_value(json_object_get(j, "order")), "F");
	json_decref(j);
	free(out);
	free(SHMA_OK("export", "--npy-version", "2", "d", "g.npy"));
	a = read_file("f.npy", &alen);
	b = read_file("g.npy", &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(a);
	free(b);
	/* an export that cannot be written leaves nothing */
	SHMA(&r, "export", "d", "no/such/dir/x.npy");
	expect(&r, 1, NULL, "cannot create no/such/dir/x.npy", "export to nowhere");
	run_free(&r);
	free(data);
	it_stop(&broker);
}

/* A progress bar on a terminal, nothing elsewhere. */
static void test_progress(void **state)
{
	const size_t n = 16 << 20;
	unsigned char *data = calloc(1, n);
	uint64_t shape[1] = { n };
	struct runopt o = { .stderr_fd = -1, .extra_fd = -1 };
	struct run r;
	int master, slave;

	(void)state;
	it_start(&broker, NULL);
	for (size_t i = 0; i < n; i += 4096)
		data[i] = 1;
	write_npy("p.npy", "|u1", false, 1, shape, data, n, 0);
	free(data);

	/* not a terminal: quiet */
	SHMA(&r, "import", "p.npy", "p");
	expect(&r, 0, NULL, NULL, "import (pipe)");
	assert_int_equal(r.errlen, 0);
	run_free(&r);

	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(master >= 0);
	assert_int_equal(grantpt(master), 0);
	assert_int_equal(unlockpt(master), 0);
	slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(slave >= 0);
	o.stderr_fd = slave;
	o.extra_fd = master;
	SHMA_OPT(&r, &o, "import", "--force", "p.npy", "p");
	close(slave);
	expect(&r, 0, NULL, NULL, "import (tty)");
	if (!strstr(r.extra, "100%"))
		fprintf(stderr, "terminal got: %s\n", r.extra);
	assert_non_null(strstr(r.extra, "p.npy"));
	assert_non_null(strstr(r.extra, "100%"));
	assert_non_null(strstr(r.extra, "16.0 MiB / 16.0 MiB"));
	run_free(&r);
	/* export too; -q silences it */
	slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
	o.stderr_fd = slave;
	SHMA_OPT(&r, &o, "export", "p", "q.npy");
	expect(&r, 0, NULL, NULL, "export (tty)");
	assert_non_null(strstr(r.extra, "100%"));
	run_free(&r);
	SHMA_OPT(&r, &o, "export", "-q", "p", "q.npy");
	close(slave);
	expect(&r, 0, NULL, NULL, "export -q (tty)");
	assert_null(strstr(r.extra, "100%"));
	run_free(&r);
	close(master);
	it_stop(&broker);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test_teardown(test_create_ls_stat_rm, teardown),
		cmocka_unit_test_teardown(test_broker_status, teardown),
		cmocka_unit_test_teardown(test_get, teardown),
		cmocka_unit_test_teardown(test_ref, teardown),
		cmocka_unit_test_teardown(test_numpy_roundtrip, teardown),
		cmocka_unit_test_teardown(test_numpy_unsupported, teardown),
		cmocka_unit_test_teardown(test_malformed_files, teardown),
		cmocka_unit_test_teardown(test_import_export_io, teardown),
		cmocka_unit_test_teardown(test_progress, teardown),
	};

	return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
