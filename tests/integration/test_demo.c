/* test_demo.c - shma-demo (`make demo`) in a small configuration: it must
 * exit 0, report its checks passed, and leave nothing behind: no process
 * (this test is a child subreaper, so orphans would become its children),
 * no temporary directory (TMPDIR is a private directory that must end up
 * empty).  And when a part fails (a worker that dies at once, a broker
 * that is not there), the demo must say so, exit non-zero and still leave
 * nothing behind. */
#include "itest.h"

#include <limits.h>
#include <sys/prctl.h>

static char tmpdir[300];

static void demo_path(char *out, size_t len)
{
	char self[PATH_MAX - 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	assert_true(n > 0);
	self[n] = 0;
	for (int i = 0; i < 3; i++) /* BUILD/tests/integration/x -> BUILD */
		*strrchr(self, '/') = 0;
	snprintf(out, len, "%s/shma-demo", self);
	assert_int_equal(access(out, X_OK), 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/shma-tdemo-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return -1;
	return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

static int teardown(void **state)
{
	char cmd[400];

	(void)state;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Run shma-demo with args and extra_env ("NAME=value" or NULL); its output
 * (stdout and stderr) into out; returns its exit status (-1: killed). */
static int run_demo(const char *const *args, const char *extra_env, char *out, size_t cap)
{
	extern char **environ;
	char prog[PATH_MAX], tmpenv[320];
	const char *argv[16];
	char **env;
	size_t n = 0, k = 0, got = 0;
	int pfd[2], st;
	uint64_t end = it_now_ms() + 240000;
	pid_t pid;

	demo_path(prog, sizeof(prog));
	argv[k++] = "shma-demo";
	for (size_t i = 0; args[i]; i++)
		argv[k++] = args[i];
	argv[k] = NULL;
	while (environ[n])
		n++;
	env = calloc(n + 3, sizeof(*env));
	assert_non_null(env);
	k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "TMPDIR=", 7))
			env[k++] = environ[i];
	snprintf(tmpenv, sizeof(tmpenv), "TMPDIR=%s", tmpdir);
	env[k++] = tmpenv;
	env[k++] = (char *)extra_env;
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		execve(prog, (char *const *)argv, env);
		_exit(127);
	}
	close(pfd[1]);
	free(env);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		ssize_t r;

		if (it_now_ms() > end) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&p, 1, 1000) <= 0)
			continue;
		r = read(pfd[0], out + got, cap - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == cap - 1)
			break;
	}
	out[got] = 0;
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	fputs(out, stderr); /* the demo's report, in the test's log */
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Nothing left: no child (orphans are ours), TMPDIR empty. */
static void assert_nothing_left(void)
{
	struct dirent *de;
	DIR *d;
	int st;

	it_sleep_ms(50);
	errno = 0;
	assert_int_equal(waitpid(-1, &st, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	d = opendir(tmpdir);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			fail_msg("left behind in TMPDIR: %s", de->d_name);
	closedir(d);
}

static void test_demo_small(void **state)
{
	static char out[1 << 16];
	const char *dir;

	(void)state;
	assert_int_equal(run_demo((const char *const[]){ "--size", "32MiB", "--workers", "2", NULL },
				  NULL, out, sizeof(out)),
			 0);
	assert_non_null(strstr(out, "all checks passed"));
	assert_non_null(strstr(out, "check: sum"));
	assert_non_null(strstr(out, "check: histogram of 50 bins, 4194304 values counted ok"));
	assert_non_null(strstr(out, "array data copied between processes: 0 bytes"));
	assert_non_null(strstr(out, "through ZeroMQ ipc"));
	assert_non_null(strstr(out, "2 workers and the broker exited 0"));
	dir = strstr(out, "temporary directory ");
	assert_non_null(dir);
	assert_memory_equal(dir + strlen("temporary directory "), tmpdir, strlen(tmpdir));
	assert_nothing_left();
}

static void test_demo_uneven_slices(void **state)
{
	static char out[1 << 16];

	(void)state;
	/* 3 workers, 7 slices of an array that does not divide evenly */
	assert_int_equal(run_demo((const char *const[]){ "--size", "1000000", "--workers", "3",
							 "--slices", "7", NULL },
				  NULL, out, sizeof(out)),
			 0);
	assert_non_null(strstr(out, "all checks passed"));
	assert_nothing_left();
}

static void test_demo_failures(void **state)
{
	static char out[1 << 16];

	(void)state;
	/* a worker that exits at once */
	assert_int_not_equal(run_demo((const char *const[]){ "--size", "8MiB", "--workers", "2",
							     NULL },
				      "SHMA_WORKER=/bin/false", out, sizeof(out)),
			     0);
	assert_non_null(strstr(out, "FAILED"));
	assert_null(strstr(out, "all checks passed"));
	assert_nothing_left();
	/* no broker */
	assert_int_not_equal(run_demo((const char *const[]){ "--size", "8MiB", NULL },
				      "SHMA_BROKER=/nonexistent/shma-broker", out, sizeof(out)),
			     0);
	assert_non_null(strstr(out, "FAILED"));
	assert_nothing_left();
	/* bad arguments */
	assert_int_equal(run_demo((const char *const[]){ "--size", "lots", NULL }, NULL, out,
				  sizeof(out)),
			 2);
	assert_nothing_left();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_demo_small),
		cmocka_unit_test(test_demo_uneven_slices),
		cmocka_unit_test(test_demo_failures),
	};

	return cmocka_run_group_tests_name("demo", tests, setup, teardown);
}
