/* fuzz_config.c - libFuzzer harness for config_load_text (broker/config.c).
 *
 * The input is the configuration's JSON text.  XDG_RUNTIME_DIR is fixed so
 * that runtime_dir resolves the same way on every run; loading a
 * configuration reads the environment and the user/group databases but
 * writes nothing.  Success is freed with config_free; a failure must leave a
 * formattable, NUL-terminated error.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
	fprintf(stderr, "fuzz_config: %s\n", what);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	setenv("XDG_RUNTIME_DIR", "/tmp/shma-fuzz-config", 1);
	setenv("XDG_STATE_HOME", "/tmp/shma-fuzz-config", 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct broker_config cfg;
	struct config_error cerr;
	char msg[1024];
	int err;

	memset(&cerr, 'x', sizeof(cerr));
	err = config_load_text((const char *)data, size, "<fuzz>", &cfg, &cerr);
	if (!err) {
		if (!cfg.runtime_dir || !cfg.socket_path || cfg.socket_path[0] != '/')
			die("a loaded configuration lacks runtime_dir or an absolute socket_path");
		config_free(&cfg);
		return 0;
	}
	if (err != -EINVAL && err != -ENOMEM)
		die("config_load_text failed with a code other than -EINVAL/-ENOMEM");
	if (!memchr(cerr.source, 0, sizeof(cerr.source)) || !memchr(cerr.key, 0, sizeof(cerr.key)) ||
	    !memchr(cerr.text, 0, sizeof(cerr.text)))
		die("config_error has a field that is not NUL-terminated");
	config_error_format(&cerr, msg, sizeof(msg));
	if (!memchr(msg, 0, sizeof(msg)))
		die("config_error_format did not NUL-terminate");
	return 0;
}
