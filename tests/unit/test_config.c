/* test_config.c - broker configuration: defaults, values, errors, access. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

/* main sets XDG_STATE_HOME to this, so that data_dir null resolves the same
 * way everywhere; tests that change it put it back. */
#define STATE_HOME "/var/tmp/shma-test-state"

static int load(const char *text, struct broker_config *cfg, struct config_error *err)
{
	return config_load_text(text, strlen(text), "test.json", cfg, err);
}

/* text must be rejected at line:column, naming key, with a message that
 * contains what; and *cfg must be untouched. */
static void check_error(const char *text, int line, int column, const char *key,
			const char *what)
{
	struct broker_config cfg, before;
	struct config_error err;
	int rc;

	memset(&cfg, 0x5a, sizeof(cfg));
	before = cfg;
	rc = load(text, &cfg, &err);
	if (rc != -EINVAL || err.line != line || err.column != column ||
	    strcmp(err.key, key) || !strstr(err.text, what))
		print_error("for:\n%s\ngot %d %d:%d key \"%s\" text \"%s\"\n", text, rc, err.line,
			    err.column, err.key, err.text);
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(err.source, "test.json");
	assert_int_equal(err.line, line);
	assert_int_equal(err.column, column);
	assert_string_equal(err.key, key);
	assert_non_null(strstr(err.text, what));
	assert_memory_equal(&cfg, &before, sizeof(cfg));
}

/* Write text to a new temporary file; returns its (malloc'd) name. */
static char *write_temp(const char *text)
{
	char *name = strdup("/tmp/test_config_XXXXXX");
	size_t len = strlen(text);
	int fd;

	assert_non_null(name);
	fd = mkstemp(name);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	return name;
}

static void check_defaults(const struct broker_config *cfg)
{
	assert_int_equal(cfg->socket_mode, 0600);
	assert_int_equal(cfg->socket_gid, -1);
	assert_int_equal(cfg->pool_size, 4 * GiB);
	assert_int_equal(cfg->block_size, 2 * MiB);
	assert_int_equal(cfg->keep_revisions, 16);
	assert_int_equal(cfg->keep_ms, 60000);
	assert_int_equal(cfg->max_clients, 256);
	assert_int_equal(cfg->max_message, 65536);
	assert_int_equal(cfg->max_arrays, 4096);
	assert_int_equal(cfg->max_commit_bytes, 4 * GiB);
	assert_int_equal(cfg->rw_uids.n, 0);
	assert_null(cfg->rw_uids.ids);
	assert_int_equal(cfg->rw_gids.n, 0);
	assert_int_equal(cfg->ro_uids.n, 0);
	assert_int_equal(cfg->ro_gids.n, 0);
	assert_int_equal(cfg->log_level, LOG_INFO);
	assert_string_equal(cfg->data_dir, STATE_HOME "/shma");
	assert_false(cfg->durability_async);
	assert_int_equal(cfg->store_size, 64 * GiB);
}

static void test_default_xdg(void **state)
{
	struct broker_config cfg;
	struct config_error err;

	(void)state;
	assert_int_equal(setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1), 0);
	assert_int_equal(config_load_text(config_default_json, strlen(config_default_json),
					  "<default>", &cfg, &err), 0);
	check_defaults(&cfg);
	assert_string_equal(cfg.runtime_dir, "/run/user/4242/shma");
	assert_string_equal(cfg.socket_path, "/run/user/4242/shma/broker.sock");
	assert_string_equal(cfg.publish, "ipc:///run/user/4242/shma/inval.ipc");
	config_free(&cfg);
	assert_null(cfg.runtime_dir);
	assert_int_equal(cfg.pool_size, 0);

	/* every key is optional: {} is the default */
	assert_int_equal(load("{}", &cfg, &err), 0);
	check_defaults(&cfg);
	assert_string_equal(cfg.socket_path, "/run/user/4242/shma/broker.sock");
	config_free(&cfg);
	config_free(&cfg); /* harmless twice, and on NULL */
	config_free(NULL);
	unsetenv("XDG_RUNTIME_DIR");
}

static void test_default_tmp(void **state)
{
	static const char *const unset[] = { NULL, "", "relative/dir" };
	struct broker_config cfg;
	struct config_error err;
	char want[64];
	size_t i;

	(void)state;
	snprintf(want, sizeof(want), "/tmp/shma-%lu", (unsigned long)geteuid());
	for (i = 0; i < 3; i++) {
		if (unset[i])
			assert_int_equal(setenv("XDG_RUNTIME_DIR", unset[i], 1), 0);
		else
			unsetenv("XDG_RUNTIME_DIR");
		assert_int_equal(config_load_text(config_default_json,
						  strlen(config_default_json), "<default>",
						  &cfg, &err), 0);
		check_defaults(&cfg);
		assert_string_equal(cfg.runtime_dir, want);
		assert_int_equal(strncmp(cfg.socket_path, want, strlen(want)), 0);
		assert_string_equal(cfg.socket_path + strlen(want), "/broker.sock");
		assert_int_equal(strncmp(cfg.publish + 6, want, strlen(want)), 0);
		config_free(&cfg);
	}
	unsetenv("XDG_RUNTIME_DIR");
}

static const char custom[] =
	"{\n"
	"  \"runtime_dir\": \"/run/shma-test/\",\n"
	"  \"socket\": { \"path\": \"s/b.sock\", \"mode\": \"0660\", \"group\": 1234 },\n"
	"  \"publish\": \"tcp://127.0.0.1:5555\",\n"
	"  \"pool_size\": \"64 MiB\",\n"
	"  \"block_size\": 65536,\n"
	"  \"retention\": { \"revisions\": 3, \"seconds\": 1.5 },\n"
	"  \"limits\": { \"clients\": 10, \"message\": \"8KiB\", \"arrays\": 7,\n"
	"              \"commit_bytes\": \"1T\" },\n"
	"  \"access\": { \"rw_uids\": [1000, \"root\"], \"rw_gids\": [],\n"
	"              \"ro_uids\": [4294967294], \"ro_gids\": [5, 6] },\n"
	"  \"log_level\": \"debug\",\n"
	"  \"data_dir\": \"data\",\n"
	"  \"durability\": \"async\",\n"
	"  \"store_size\": \"2GiB\"\n"
	"}\n";

static void test_custom_file(void **state)
{
	struct broker_config cfg;
	struct config_error err;
	char *name, *tmp, want[PATH_MAX + 8];

	(void)state;
	name = write_temp(custom);
	assert_int_equal(config_load_file(name, &cfg, &err), 0);
	assert_string_equal(cfg.runtime_dir, "/run/shma-test");
	assert_string_equal(cfg.socket_path, "/run/shma-test/s/b.sock");
	assert_int_equal(cfg.socket_mode, 0660);
	assert_int_equal(cfg.socket_gid, 1234);
	assert_string_equal(cfg.publish, "tcp://127.0.0.1:5555");
	assert_int_equal(cfg.pool_size, 64 * MiB);
	assert_int_equal(cfg.block_size, 64 * KiB);
	assert_int_equal(cfg.keep_revisions, 3);
	assert_int_equal(cfg.keep_ms, 1500);
	assert_int_equal(cfg.max_clients, 10);
	assert_int_equal(cfg.max_message, 8192);
	assert_int_equal(cfg.max_arrays, 7);
	assert_int_equal(cfg.max_commit_bytes, TiB);
	assert_int_equal(cfg.rw_uids.n, 2);
	assert_int_equal(cfg.rw_uids.ids[0], 1000);
	assert_int_equal(cfg.rw_uids.ids[1], 0); /* root, by name */
	assert_int_equal(cfg.rw_gids.n, 0);
	assert_int_equal(cfg.ro_uids.n, 1);
	assert_int_equal(cfg.ro_uids.ids[0], 4294967294u);
	assert_int_equal(cfg.ro_gids.n, 2);
	assert_int_equal(cfg.ro_gids.ids[0], 5);
	assert_int_equal(cfg.ro_gids.ids[1], 6);
	assert_int_equal(cfg.log_level, LOG_DEBUG);
	assert_true(cfg.durability_async);
	assert_int_equal(cfg.store_size, 2 * GiB);
	/* relative to the file's directory */
	tmp = realpath("/tmp", NULL);
	assert_non_null(tmp);
	snprintf(want, sizeof(want), "%s/data", tmp);
	assert_string_equal(cfg.data_dir, want);
	free(tmp);
	config_free(&cfg);
	unlink(name);
	free(name);
}

/* Partial documents merge with the default, nested objects key by key. */
static void test_partial_and_paths(void **state)
{
	struct broker_config cfg;
	struct config_error err;
	char *cwd, want[PATH_MAX + 16];

	(void)state;
	/* a duplicate found past an object value */
	assert_int_equal(load("{ \"socket\": { \"mode\": \"660\" }, \"runtime_dir\": \"/\","
			      "  \"socket\": { \"group\": \"root\" } }", &cfg, &err), -EINVAL);
	assert_string_equal(err.key, "socket");

	assert_int_equal(load("{ \"socket\": { \"mode\": \"660\", \"group\": \"root\" },"
			      "  \"runtime_dir\": \"/\", \"publish\": \"ipc://@abstract\","
			      "  \"retention\": { \"seconds\": 0.0004 }, \"data_dir\": \"d/x\" }",
			      &cfg, &err), 0);
	assert_int_equal(cfg.socket_mode, 0660);
	assert_int_equal(cfg.socket_gid, 0);
	assert_string_equal(cfg.socket_path, "/broker.sock"); /* default path, user dir */
	assert_string_equal(cfg.publish, "ipc://@abstract");
	assert_int_equal(cfg.keep_revisions, 16); /* default kept beside seconds */
	assert_int_equal(cfg.keep_ms, 0);
	cwd = getcwd(NULL, 0);
	assert_non_null(cwd);
	snprintf(want, sizeof(want), "%s/d/x", cwd);
	assert_string_equal(cfg.data_dir, want); /* text: relative to the cwd */
	free(cwd);
	config_free(&cfg);

	assert_int_equal(load("{ \"data_dir\": \"/srv/shma\", \"socket\": "
			      "{ \"path\": \"/run/b.sock\" }, \"publish\": \"inproc://x\" }",
			      &cfg, &err), 0);
	assert_string_equal(cfg.data_dir, "/srv/shma");
	assert_string_equal(cfg.socket_path, "/run/b.sock");
	assert_string_equal(cfg.publish, "inproc://x");
	config_free(&cfg);
}

static void test_sizes(void **state)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} ok[] = {
		{ "4096", 4096 },	   { "\"4096\"", 4096 },     { "\"4096B\"", 4096 },
		{ "\"4K\"", 4096 },	   { "\"4KiB\"", 4096 },     { "\"3 MiB\"", 3 * MiB },
		{ "\"5M\"", 5 * MiB },	   { "\"2G\"", 2 * GiB },    { "\"7GiB\"", 7 * GiB },
		{ "\"2T\"", 2 * TiB },	   { "\"16TiB\"", 16 * TiB },
		{ "\"16777215TiB\"", 16777215 * TiB },
		{ "\"18446744073709551615\"", UINT64_MAX },
	};
	struct broker_config cfg;
	struct config_error err;
	char text[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "{ \"limits\": { \"commit_bytes\": %s } }",
			 ok[i].text);
		assert_int_equal(load(text, &cfg, &err), 0);
		assert_int_equal(cfg.max_commit_bytes, ok[i].bytes);
		config_free(&cfg);
	}
	check_error("{\"pool_size\": \"1.5GiB\"}", 1, 2, "pool_size", "is not a size");
	check_error("{\"pool_size\": \"4GB\"}", 1, 2, "pool_size", "is not a size");
	check_error("{\"pool_size\": \"GiB\"}", 1, 2, "pool_size", "is not a size");
	check_error("{\"pool_size\": \" 4GiB\"}", 1, 2, "pool_size", "is not a size");
	check_error("{\"pool_size\": \"\"}", 1, 2, "pool_size", "is not a size");
	check_error("{\"pool_size\": -4096}", 1, 2, "pool_size", "must not be negative");
	check_error("{\"pool_size\": 4096.0}", 1, 2, "pool_size", "got a real number");
	check_error("{\"pool_size\": \"99999999999TiB\"}", 1, 2, "pool_size",
		    "does not fit in 64 bits");
	check_error("{\"pool_size\": \"18446744073709551616\"}", 1, 2, "pool_size",
		    "does not fit in 64 bits");
	check_error("{\"pool_size\": \"17TiB\"}", 1, 2, "pool_size", "out of range");
	check_error("{\"pool_size\": \"1020KiB\"}", 1, 2, "pool_size", "out of range");
}

/* Set (value) or unset (NULL) an environment variable. */
static void set_env(const char *name, const char *value)
{
	if (value)
		assert_int_equal(setenv(name, value, 1), 0);
	else
		assert_int_equal(unsetenv(name), 0);
}

/* data_dir is a path, false (memory only) or null: the per-user state
 * directory, from the environment. */
static void test_data_dir(void **state)
{
	static const char *const no_xdg[] = { NULL, "", "relative/state" };
	struct broker_config cfg;
	struct config_error err;
	char *home, *cwd, want[PATH_MAX + 16];
	size_t i;

	(void)state;
	home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

	/* null: $XDG_STATE_HOME/shma (a trailing slash dropped) */
	set_env("XDG_STATE_HOME", "/xdg/state/");
	set_env("HOME", "/home/someone");
	assert_int_equal(load("{\"data_dir\": null}", &cfg, &err), 0);
	assert_string_equal(cfg.data_dir, "/xdg/state/shma");
	config_free(&cfg);

	/* XDG_STATE_HOME unset, empty or relative: $HOME/.local/state/shma */
	for (i = 0; i < sizeof(no_xdg) / sizeof(no_xdg[0]); i++) {
		set_env("XDG_STATE_HOME", no_xdg[i]);
		assert_int_equal(load("{}", &cfg, &err), 0);
		assert_string_equal(cfg.data_dir, "/home/someone/.local/state/shma");
		config_free(&cfg);
	}

	/* neither usable: an error naming data_dir, located if the user wrote it */
	set_env("HOME", NULL);
	check_error("{}", 0, 0, "data_dir", "set data_dir to a directory (or to false");
	set_env("HOME", "home/someone");
	check_error("{\n  \"data_dir\": null\n}", 2, 3, "data_dir",
		    "neither variable is an absolute path");

	/* false: memory only, whatever the environment */
	assert_int_equal(load("{\"data_dir\": false}", &cfg, &err), 0);
	assert_null(cfg.data_dir);
	config_free(&cfg);

	/* a path: absolute as it is; relative from the current directory (text) */
	assert_int_equal(load("{\"data_dir\": \"/srv/shma\"}", &cfg, &err), 0);
	assert_string_equal(cfg.data_dir, "/srv/shma");
	config_free(&cfg);
	assert_int_equal(load("{\"data_dir\": \"state\"}", &cfg, &err), 0);
	cwd = getcwd(NULL, 0);
	assert_non_null(cwd);
	snprintf(want, sizeof(want), "%s/state", cwd);
	assert_string_equal(cfg.data_dir, want);
	free(cwd);
	config_free(&cfg);

	/* anything else */
	check_error("{\"data_dir\": true}", 1, 2, "data_dir",
		    "expected a directory (string), null or false, got true");
	check_error("{\"data_dir\": 0}", 1, 2, "data_dir", "got an integer");
	check_error("{\"data_dir\": {}}", 1, 2, "data_dir", "got an object");
	check_error("{\"data_dir\": \"\"}", 1, 2, "data_dir", "must not be empty");

	set_env("HOME", home);
	set_env("XDG_STATE_HOME", STATE_HOME);
	free(home);
}

static void test_durability(void **state)
{
	struct broker_config cfg;
	struct config_error err;

	(void)state;
	assert_int_equal(load("{\"durability\": \"async\"}", &cfg, &err), 0);
	assert_true(cfg.durability_async);
	config_free(&cfg);
	assert_int_equal(load("{\"durability\": \"sync\"}", &cfg, &err), 0);
	assert_false(cfg.durability_async);
	config_free(&cfg);

	check_error("{\n  \"durability\": \"fsync\"\n}", 2, 3, "durability",
		    "\"fsync\" is not a durability (sync or async)");
	check_error("{\"durability\": \"Async\"}", 1, 2, "durability", "is not a durability");
	check_error("{\"durability\": \"\"}", 1, 2, "durability", "must not be empty");
	check_error("{\"durability\": true}", 1, 2, "durability", "expected a string, got true");
	check_error("{\"durability\": null}", 1, 2, "durability", "expected a string, got null");
}

static void test_store_size(void **state)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} ok[] = {
		{ "\"1MiB\"", MiB },	      { "1048576", MiB },	 { "\"1536 MiB\"", 1536 * MiB },
		{ "\"64GiB\"", 64 * GiB },  { "\"1024G\"", TiB },	 { "\"1TiB\"", TiB },
		{ "1048577", MiB + 1 },
	};
	struct broker_config cfg;
	struct config_error err;
	char text[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "{ \"store_size\": %s }", ok[i].text);
		assert_int_equal(load(text, &cfg, &err), 0);
		assert_int_equal(cfg.store_size, ok[i].bytes);
		config_free(&cfg);
	}
	check_error("{\n  \"store_size\": \"1020KiB\"\n}", 2, 3, "store_size",
		    "1020 KiB is out of range (1 MiB to 1 TiB)");
	check_error("{\"store_size\": 1048575}", 1, 2, "store_size", "out of range");
	check_error("{\"store_size\": \"2TiB\"}", 1, 2, "store_size", "out of range");
	check_error("{\"store_size\": 1099511627777}", 1, 2, "store_size",
		    "1099511627777 bytes is out of range");
	check_error("{\"store_size\": \"64GB\"}", 1, 2, "store_size", "is not a size");
	check_error("{\"store_size\": \"1.5GiB\"}", 1, 2, "store_size", "is not a size");
	check_error("{\"store_size\": -1}", 1, 2, "store_size", "must not be negative");
	check_error("{\"store_size\": null}", 1, 2, "store_size", "expected a size");
	check_error("{\"store_size\": 65536.0}", 1, 2, "store_size", "got a real number");
}

static void test_syntax_errors(void **state)
{
	struct broker_config cfg, before;
	struct config_error err;

	(void)state;
	memset(&cfg, 0x5a, sizeof(cfg));
	before = cfg;
	/* trailing comma: jansson's position, no key */
	assert_int_equal(load("{\n  \"pool_size\": \"4GiB\",\n}\n", &cfg, &err), -EINVAL);
	assert_string_equal(err.source, "test.json");
	assert_int_equal(err.line, 3);
	assert_int_equal(err.column, 1);
	assert_string_equal(err.key, "");
	assert_non_null(strstr(err.text, "'}'"));
	assert_memory_equal(&cfg, &before, sizeof(cfg));

	assert_int_equal(load("{\n  \"limits\": { \"clients\" 3 }\n}", &cfg, &err), -EINVAL);
	assert_int_equal(err.line, 2);
	assert_int_equal(err.column, 25);
	assert_non_null(strstr(err.text, "':' expected"));

	assert_int_equal(load("", &cfg, &err), -EINVAL);
	assert_int_equal(err.line, 1);
	assert_int_equal(err.column, 0);
	assert_int_equal(config_load_text("{}", 1, "cut", &cfg, &err), -EINVAL);
	assert_string_equal(err.source, "cut");
	assert_memory_equal(&cfg, &before, sizeof(cfg));

	/* duplicates: where the second one starts, with its path */
	check_error("{\n  \"log_level\": \"info\",\n  \"log_level\": \"warn\"\n}", 3, 3,
		    "log_level", "duplicate key");
	check_error("{\n  \"limits\": {\n    \"clients\": 1,\n    \"cl\\u0069ents\": 2\n  }\n}",
		    4, 5, "limits.clients", "duplicate key");
	check_error("{\"access\": {\"ro_uids\": [1, {\"a\": 1, \"a\": 2}]}}", 1, 37,
		    "access.ro_uids[1].a", "duplicate key");

	/* the top level must be an object */
	check_error("\n  [1, 2]", 2, 3, "", "expected an object at the top level");
}

static void test_unknown_keys(void **state)
{
	(void)state;
	check_error("{\n  \"pool_size\": \"4GiB\",\n  \"pool\": 1\n}", 3, 3, "pool",
		    "unknown key");
	check_error("{\"store\": {}}", 1, 2, "store",
		    "unknown key (known here: runtime_dir, socket, publish, pool_size, "
		    "block_size, retention, limits, access, log_level, data_dir, durability, "
		    "store_size)");
	check_error("{\n  \"socket\": {\n    \"mode\": \"0600\",\n    \"owner\": 0\n  }\n}", 4, 5,
		    "socket.owner", "unknown key (known here: path, mode, group)");
	check_error("{\"retention\": {\"revisions\": 2, \"Seconds\": 1}}", 1, 32,
		    "retention.Seconds", "unknown key");
	check_error("{\"limits\": {\"clients\": 2}, \"access\": {\"rw_uid\": []}}", 1, 39,
		    "access.rw_uid", "unknown key");
	/* escapes and non-ASCII characters count as one column each */
	check_error("{\"log_level\": \"info\", \"\\u00e9t\\u00e9\": 1}", 1, 23,
		    "\xc3\xa9t\xc3\xa9", "unknown key");
	check_error("{\"log_level\": \"\xc3\xa9\xc3\xa9\", \"x\": 2}", 1, 21, "x", "unknown key");
}

static void test_wrong_types(void **state)
{
	(void)state;
	check_error("{\n  \"limits\": {\n    \"clients\": \"10\"\n  }\n}", 3, 5, "limits.clients",
		    "expected an integer, got a string");
	check_error("{\"socket\": [1]}", 1, 2, "socket", "expected an object, got an array");
	check_error("{\"pool_size\": true}", 1, 2, "pool_size", "expected a size");
	check_error("{\"runtime_dir\": 5}", 1, 2, "runtime_dir",
		    "expected a string or null, got an integer");
	check_error("{\"runtime_dir\": \"run/shma\"}", 1, 2, "runtime_dir",
		    "not an absolute path");
	check_error("{\"socket\": {\"path\": null}}", 1, 13, "socket.path",
		    "expected a string, got null");
	check_error("{\"socket\": {\"path\": \"\"}}", 1, 13, "socket.path", "must not be empty");
	check_error("{\"socket\": {\"mode\": 432}}", 1, 13, "socket.mode",
		    "expected a string of octal digits");
	check_error("{\"socket\": {\"group\": false}}", 1, 13, "socket.group",
		    "expected a group id (integer) or name (string), got false");
	check_error("{\"retention\": {\"revisions\": 2.0}}", 1, 16, "retention.revisions",
		    "expected an integer, got a real number");
	check_error("{\"retention\": {\"seconds\": \"60\"}}", 1, 16, "retention.seconds",
		    "expected a number of seconds");
	check_error("{\"access\": {\"ro_gids\": {}}}", 1, 13, "access.ro_gids",
		    "expected an array of group ids or names, got an object");
	check_error("{\"access\": {\"ro_uids\": [0, 1.5]}}", 1, 28, "access.ro_uids[1]",
		    "expected a user id (integer) or name (string), got a real number");
	check_error("{\"log_level\": 3}", 1, 2, "log_level", "expected a string");
	check_error("{\"data_dir\": []}", 1, 2, "data_dir",
		    "expected a directory (string), null or false, got an array");
	check_error("{\"publish\": 5555}", 1, 2, "publish", "expected a string or null");
}

static void test_ranges(void **state)
{
	struct broker_config cfg;
	struct config_error err;
	char text[256], path[160];

	(void)state;
	check_error("{\n  \"pool_size\": 1000000000\n}", 2, 3, "pool_size",
		    "not a multiple of 4 KiB");
	check_error("{\n  \"block_size\": \"12KiB\"\n}", 2, 3, "block_size",
		    "not a power of two");
	check_error("{\"block_size\": 2048}", 1, 2, "block_size", "out of range");
	check_error("{\"block_size\": \"2GiB\", \"pool_size\": \"4GiB\"}", 1, 2, "block_size",
		    "out of range");
	check_error("{\"pool_size\": \"1MiB\",\n \"block_size\": \"2MiB\"}", 2, 2, "block_size",
		    "2 MiB is larger than pool_size (1 MiB)");
	check_error("{\"pool_size\": \"1MiB\"}", 1, 2, "pool_size",
		    "1 MiB is smaller than block_size (2 MiB)");
	check_error("{\n  \"retention\": {\n    \"revisions\": 0\n  }\n}", 3, 5,
		    "retention.revisions", "0 is out of range (1 to 1000000000)");
	check_error("{\"retention\": {\"revisions\": 1000000001}}", 1, 16, "retention.revisions",
		    "out of range");
	check_error("{\"retention\": {\"seconds\": -1}}", 1, 16, "retention.seconds",
		    "out of range");
	check_error("{\"retention\": {\"seconds\": 315360000.5}}", 1, 16, "retention.seconds",
		    "out of range");
	check_error("{\n  \"limits\": {\n    \"clients\": 0\n  }\n}", 3, 5, "limits.clients",
		    "0 is out of range (1 to 65536)");
	check_error("{\n  \"limits\": {\n    \"clients\": 70000\n  }\n}", 3, 5, "limits.clients",
		    "70000 is out of range (1 to 65536)");
	check_error("{\"limits\": {\"message\": 4095}}", 1, 13, "limits.message",
		    "out of range (4 KiB to 16 MiB)");
	check_error("{\"limits\": {\"message\": \"17MiB\"}}", 1, 13, "limits.message",
		    "out of range");
	check_error("{\"limits\": {\"arrays\": 0}}", 1, 13, "limits.arrays", "out of range");
	check_error("{\"limits\": {\"arrays\": 1000001}}", 1, 13, "limits.arrays", "out of range");
	check_error("{\"limits\": {\"commit_bytes\": 4095}}", 1, 13, "limits.commit_bytes",
		    "out of range");
	check_error("{\n  \"socket\": { \"mode\": \"0999\" }\n}", 2, 15, "socket.mode",
		    "\"0999\" is not an octal mode");
	check_error("{\n  \"socket\": { \"mode\": \"abc\" }\n}", 2, 15, "socket.mode",
		    "\"abc\" is not an octal mode");
	check_error("{\"socket\": {\"mode\": \"\"}}", 1, 13, "socket.mode", "not an octal mode");
	check_error("{\"socket\": {\"mode\": \"01777\"}}", 1, 13, "socket.mode",
		    "out of range (at most 0777)");
	check_error("{\"socket\": {\"group\": -1}}", 1, 13, "socket.group", "not a group id");
	check_error("{\"socket\": {\"group\": 4294967295}}", 1, 13, "socket.group",
		    "not a group id");
	check_error("{\"socket\": {\"group\": \"no-such-group-shma\"}}", 1, 13, "socket.group",
		    "no such group \"no-such-group-shma\"");
	check_error("{\n  \"log_level\": \"verbose\"\n}", 2, 3, "log_level",
		    "\"verbose\" is not a log level (error, warn, info or debug)");
	check_error("{\n  \"publish\": \"http://localhost:80\"\n}", 2, 3, "publish",
		    "not a ZeroMQ endpoint");
	check_error("{\"publish\": \"tcp://\"}", 1, 2, "publish", "not a ZeroMQ endpoint");
	check_error("{\n  \"access\": {\n    \"rw_uids\": [0, 1, \"no-such-user-shma\"]\n  }\n}",
		    3, 23, "access.rw_uids[2]", "no such user \"no-such-user-shma\"");
	check_error("{\"access\": {\"rw_gids\": [\n 4294967295]}}", 2, 2, "access.rw_gids[0]",
		    "not a group id");
	check_error("{\"access\": {\"ro_gids\": [\"no-such-group-shma\"]}}", 1, 25,
		    "access.ro_gids[0]", "no such group");

	/* the resolved socket path must fit sun_path (107 bytes) */
	memset(path, 'p', 100);
	path[0] = '/';
	path[100] = '\0';
	snprintf(text, sizeof(text), "{\n  \"socket\": {\n    \"path\": \"%s/%s\"\n  }\n}", path,
		 "broker.sock");
	check_error(text, 3, 5, "socket.path", "is 112 bytes long, a socket path holds at most 107");
	snprintf(text, sizeof(text), "{\"socket\": {\"path\": \"%s/bb.sock\"}}", path);
	check_error(text, 1, 13, "socket.path", "is 108 bytes long");
	snprintf(text, sizeof(text), "{\"socket\": {\"path\": \"%s/b.sock\"}}", path);
	assert_int_equal(load(text, &cfg, &err), 0);
	assert_int_equal(strlen(cfg.socket_path), 107);
	config_free(&cfg);
	/* the default socket.path under a long runtime_dir: not in the text, no position */
	snprintf(text, sizeof(text), "{ \"runtime_dir\": \"%s\" }", path);
	check_error(text, 0, 0, "socket.path", "shorten runtime_dir or socket.path");
	/* the default ipc endpoint too */
	snprintf(text, sizeof(text), "{ \"runtime_dir\": \"%s\", \"socket\": {\"path\": \"/s\"} }",
		 path);
	check_error(text, 0, 0, "publish", "an ipc endpoint holds at most 107");
}

static void test_load_file_errors(void **state)
{
	struct broker_config cfg, before;
	struct config_error err;
	char msg[512], *name;

	(void)state;
	memset(&cfg, 0x5a, sizeof(cfg));
	before = cfg;
	assert_int_equal(config_load_file("/nonexistent/shma.json", &cfg, &err), -ENOENT);
	assert_string_equal(err.source, "/nonexistent/shma.json");
	assert_int_equal(err.line, 0);
	assert_string_equal(err.key, "");
	assert_memory_equal(&cfg, &before, sizeof(cfg));
	config_error_format(&err, msg, sizeof(msg));
	assert_string_equal(msg, "/nonexistent/shma.json: No such file or directory");

	assert_int_equal(config_load_file("/tmp", &cfg, &err), -EISDIR);
	assert_memory_equal(&cfg, &before, sizeof(cfg));

	name = write_temp("{\n  \"limits\": {\n    \"clients\": 0\n  }\n}\n");
	assert_int_equal(config_load_file(name, &cfg, &err), -EINVAL);
	assert_memory_equal(&cfg, &before, sizeof(cfg));
	config_error_format(&err, msg, sizeof(msg));
	assert_string_equal(msg + strlen(name),
			    ":3:5: limits.clients: 0 is out of range (1 to 65536)");
	assert_int_equal(strncmp(msg, name, strlen(name)), 0);
	unlink(name);
	free(name);
}

static void test_error_format(void **state)
{
	struct config_error err = { .source = "b.json", .line = 3, .column = 5,
				    .key = "limits.clients", .text = "too many" };
	char buf[512];

	(void)state;
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "b.json:3:5: limits.clients: too many");
	err.column = 0;
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "b.json:3: limits.clients: too many");
	err.line = 0;
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "b.json: limits.clients: too many");
	err.key[0] = '\0';
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "b.json: too many");
	err.source[0] = '\0';
	config_error_format(&err, buf, sizeof(buf));
	assert_string_equal(buf, "too many");
	/* truncated, still terminated */
	strcpy(err.source, "b.json");
	config_error_format(&err, buf, 5);
	assert_string_equal(buf, "b.js");
	buf[0] = 'x';
	config_error_format(&err, buf, 0);
	assert_int_equal(buf[0], 'x');
}

static void test_access(void **state)
{
	uint32_t rw_uid[] = { 1001 }, ro_uid[] = { 1002 }, rw_gid[] = { 2001 },
		 ro_gid[] = { 2002, 2003 };
	struct broker_config cfg = { 0 };
	gid_t g_none[] = { 100 }, g_rw[] = { 2001 }, g_ro[] = { 2003 },
	      g_supp[] = { 100, 500, 2002 }, g_both[] = { 2002, 2001 };

	(void)state;
	/* empty lists: only the broker's own uid */
	assert_int_equal(config_access(&cfg, 1000, g_none, 1, 1000), ACCESS_RW);
	assert_int_equal(config_access(&cfg, 1001, g_rw, 1, 1000), ACCESS_NONE);
	assert_int_equal(config_access(&cfg, 0, NULL, 0, 1000), ACCESS_NONE);

	cfg.rw_uids = (struct id_list){ rw_uid, 1 };
	cfg.ro_uids = (struct id_list){ ro_uid, 1 };
	cfg.rw_gids = (struct id_list){ rw_gid, 1 };
	cfg.ro_gids = (struct id_list){ ro_gid, 2 };
	assert_int_equal(config_access(&cfg, 1000, NULL, 0, 1000), ACCESS_RW);
	assert_int_equal(config_access(&cfg, 1001, g_none, 1, 1000), ACCESS_RW);
	assert_int_equal(config_access(&cfg, 1002, g_none, 1, 1000), ACCESS_RO);
	assert_int_equal(config_access(&cfg, 1003, g_rw, 1, 1000), ACCESS_RW);
	assert_int_equal(config_access(&cfg, 1003, g_ro, 1, 1000), ACCESS_RO);
	assert_int_equal(config_access(&cfg, 1003, g_none, 1, 1000), ACCESS_NONE);
	assert_int_equal(config_access(&cfg, 1003, NULL, 0, 1000), ACCESS_NONE);
	/* a supplementary group counts like the primary one */
	assert_int_equal(config_access(&cfg, 1003, g_supp, 3, 1000), ACCESS_RO);
	assert_int_equal(config_access(&cfg, 1003, g_both, 2, 1000), ACCESS_RW);
	/* ro uid but a rw group: the stronger right wins */
	assert_int_equal(config_access(&cfg, 1002, g_rw, 1, 1000), ACCESS_RW);
}

/* Fail jansson's Nth allocation: every failure is clean (an error, no leak,
 * cfg untouched) until enough allocations succeed. */
static long alloc_budget;

static void *failing_malloc(size_t size)
{
	if (alloc_budget-- <= 0)
		return NULL;
	return malloc(size);
}

static void test_out_of_memory(void **state)
{
	struct broker_config cfg, before;
	struct config_error err;
	long n;
	int rc;

	(void)state;
	memset(&cfg, 0x5a, sizeof(cfg));
	before = cfg;
	for (n = 0;; n++) {
		alloc_budget = n;
		json_set_alloc_funcs(failing_malloc, free);
		rc = load(custom, &cfg, &err);
		json_set_alloc_funcs(malloc, free);
		if (rc == 0)
			break;
		/* jansson reports some failed allocations as syntax errors */
		if (rc != -ENOMEM && rc != -EINVAL)
			print_error("allocation %ld: %d %s\n", n, rc, err.text);
		assert_true(rc == -ENOMEM || rc == -EINVAL);
		assert_memory_equal(&cfg, &before, sizeof(cfg));
	}
	assert_true(n > 10);
	assert_int_equal(cfg.max_arrays, 7);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_xdg),
		cmocka_unit_test(test_default_tmp),
		cmocka_unit_test(test_custom_file),
		cmocka_unit_test(test_partial_and_paths),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_data_dir),
		cmocka_unit_test(test_durability),
		cmocka_unit_test(test_store_size),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_load_file_errors),
		cmocka_unit_test(test_error_format),
		cmocka_unit_test(test_access),
		cmocka_unit_test(test_out_of_memory),
	};

	if (setenv("XDG_STATE_HOME", STATE_HOME, 1))
		return 1;
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
