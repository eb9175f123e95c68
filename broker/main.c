/* main.c - shma-broker: owns committed array data and serves workers.
 *
 *   shma-broker [-c FILE] [--check] [-h] [--version]
 *
 * Without -c it runs on the embedded default configuration (config/broker.json),
 * which needs nothing but a writable runtime directory.  Exit status: 0 after
 * a clean stop (SIGTERM, SIGINT), 2 for bad arguments or configuration, 1 when
 * the broker cannot start or fails.
 */
#include "config.h"
#include "log.h"
#include "proto.h"
#include "server.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: shma-broker [-c FILE] [--check] [--version] [-h]\n"
		   "\n"
		   "  -c, --config FILE  configuration (JSON; docs/CONFIG.md); default: the\n"
		   "                     embedded default, socket in $XDG_RUNTIME_DIR/shma or\n"
		   "                     /tmp/shma-$UID\n"
		   "      --check        validate the configuration, print it, and exit\n"
		   "      --version      print the version and protocol version\n"
		   "  -h, --help         this help\n"
		   "\n"
		   "Stops cleanly on SIGTERM or SIGINT.  Exit status: 0 clean stop, 1 failure,\n"
		   "2 bad arguments or configuration.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	struct broker_config cfg;
	struct config_error cerr;
	struct server *srv;
	bool check = false;
	char errbuf[512];
	sigset_t sigs;
	int opt, err;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'V':
			printf("shma-broker 0.1.0 (protocol %d)\n", PROTO_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shma-broker: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	err = path ? config_load_file(path, &cfg, &cerr)
		   : config_load_text(config_default_json, strlen(config_default_json),
				      "<default>", &cfg, &cerr);
	if (err) {
		config_error_format(&cerr, errbuf, sizeof(errbuf));
		fprintf(stderr, "shma-broker: bad configuration: %s\n", errbuf);
		return 2;
	}
	if (check) {
		printf("configuration ok: socket %s, publish %s, pool %llu bytes\n",
		       cfg.socket_path, cfg.publish, (unsigned long long)cfg.pool_size);
		config_free(&cfg);
		return 0;
	}
	log_set_level(cfg.log_level);

	/* a file size limit makes the store's write fail (EFBIG), like a full
	 * disk: that commit fails, the broker goes on */
	signal(SIGXFSZ, SIG_IGN);
	/* SIGTERM/SIGINT are read from a signalfd by the main loop */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);

	err = server_new(&cfg, &srv, errbuf, sizeof(errbuf));
	if (err) {
		log_error("cannot start: %s", errbuf);
		config_free(&cfg);
		return 1;
	}
	err = server_run(srv);
	server_free(&srv);
	config_free(&cfg);
	log_info("stopped");
	return err ? 1 : 0;
}
