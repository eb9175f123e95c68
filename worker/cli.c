/* cli.c - `shma`, the command-line tool: look at and manage a broker's arrays,
 * move them in and out of NumPy .npy files, print values and ArrayRefs.
 *
 *   shma [-S PATH] COMMAND [OPTIONS] [ARGS]
 *
 * Every command is one function cmd_<name>(), with its help text in the
 * command table at the end.  Commands talk to the broker through libshm's
 * public API only (shma.h); .npy headers are read and written by npy.c.
 * docs/CLI.md is the user's manual; keep it in step with the help texts.
 *
 * Exit codes: 0 success; 1 the command failed (the broker refused, an I/O
 * error, a malformed file); 2 usage error (bad option or argument); 3 the
 * broker cannot be reached (or the connection was lost).
 */
#include "npy.h"
#include "shma.h"

#include "dtype.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHMA_VERSION "0.1.0"

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,	      /* the command failed */
	EXIT_USAGE = 2,	      /* bad command line */
	EXIT_UNREACHABLE = 3, /* no broker, or the connection was lost */
};

#define GET_THRESHOLD 1000 /* get: more items than this are summarised */
#define GET_EDGE 3	   /* ... showing this many at each end of an axis */
#define LINE_WIDTH 75	   /* get: lines wrap here, as NumPy's */
#define SHAPE_TEXT (SHMA_MAXDIM * 22 + 4) /* "(" + 32 x "N, " + ")" */
#define ITEM_MAX 160	   /* get: the longest item text, NUL included */
#define IO_STEP ((size_t)8 << 20)	  /* import/export: bytes per read/write */
#define DEFAULT_CHUNK ((uint64_t)64 << 20) /* import: bytes per commit */
#define PROGRESS_MIN ((uint64_t)8 << 20)   /* smaller transfers show no bar */

/* The state of one invocation. */
struct cli {
	const char *cmd;	/* the command, for messages */
	const char *socket_opt; /* -S PATH, or NULL */
	char socket[PATH_MAX];	/* the socket actually used */
	bool verbose, quiet;
	shma_conn *conn;
};

/* ---- messages ------------------------------------------------------------ */

static void say(const struct cli *cli, const char *fmt, va_list ap)
{
	fprintf(stderr, "shma: ");
	if (cli->cmd)
		fprintf(stderr, "%s: ", cli->cmd);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* A usage error: the message, a hint, EXIT_USAGE. */
static int usage_error(const struct cli *cli, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int usage_error(const struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(cli, fmt, ap);
	va_end(ap);
	if (cli->cmd)
		fprintf(stderr, "Try 'shma %s --help'.\n", cli->cmd);
	else
		fprintf(stderr, "Try 'shma --help'.\n");
	return EXIT_USAGE;
}

static int fail(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const struct cli *cli, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(cli, fmt, ap);
	va_end(ap);
	return EXIT_FAIL;
}

/* A libshm call failed: say why (the broker's words where it answered) and
 * pick the exit code.  what: a prefix for the message, or NULL. */
static int shma_failed(const struct cli *cli, int err, const char *what)
{
	const char *msg = cli->conn ? shma_conn_error(cli->conn) : "";

	if (!msg[0])
		msg = shma_strerror(err);
	fprintf(stderr, "shma: %s: %s%s%s\n", cli->cmd, what ? what : "", what ? ": " : "", msg);
	return err == SHMA_EDISCONNECTED ? EXIT_UNREACHABLE : EXIT_FAIL;
}

/* ---- formatting ---------------------------------------------------------- */

/* "800 B", "64.0 KiB", "7.6 MiB" */
static const char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)n;
	int u = -1;

	if (n < 1024) {
		snprintf(buf, len, "%" PRIu64 " B", n);
		return buf;
	}
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

/* "(3, 4)", "(3,)", "()" */
static const char *fmt_shape(unsigned ndim, const uint64_t *shape, char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "(");

	for (unsigned i = 0; i < ndim && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%" PRIu64, i ? ", " : "", shape[i]);
	if (n < len)
		snprintf(buf + n, len - n, "%s)", ndim == 1 ? "," : "");
	return buf;
}

static const char *dtype_words(const char *s)
{
	static char buf[64];
	struct dtype dt;
	const char *why, *kind;

	if (dtype_parse(s, &dt, &why))
		return "?";
	switch (dt.kind) {
	case 'b':
		return "bool";
	case 'i':
		kind = "int";
		break;
	case 'u':
		kind = "uint";
		break;
	case 'f':
		kind = "float";
		break;
	default:
		kind = "complex";
		break;
	}
	snprintf(buf, sizeof(buf), "%s%u%s", kind, dt.size * 8,
		 dt.size == 1 ? "" : dt.big_endian ? ", big-endian" : ", little-endian");
	return buf;
}

static json_t *json_u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *json_shape(unsigned ndim, const uint64_t *shape)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < ndim; i++)
		json_array_append_new(a, json_u64(shape[i]));
	return a;
}

/* Print a JSON value (consumed) and a newline. */
static void print_json(json_t *j)
{
	char *s = json_dumps(j, 0);

	if (s)
		printf("%s\n", s);
	free(s);
	json_decref(j);
}

/* ---- parsing arguments --------------------------------------------------- */

/* "1048576", "64KiB", "2M", "1 GiB" (powers of 1024).  0 or -EINVAL. */
static int parse_bytes(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{ "", 0 },     { "B", 0 },    { "K", 10 },   { "KiB", 10 }, { "k", 10 },
		{ "KB", 10 },  { "M", 20 },   { "MiB", 20 }, { "MB", 20 },  { "G", 30 },
		{ "GiB", 30 }, { "GB", 30 },  { "T", 40 },   { "TiB", 40 }, { "TB", 40 },
	};
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].suffix)) {
			if (v > (UINT64_MAX >> units[i].shift))
				return -EINVAL;
			*out = (uint64_t)v << units[i].shift;
			return 0;
		}
	return -EINVAL;
}

/* "1000,1000", "1000x1000", "(1000, 1000)", "5", "()" or "" (0-d). */
static int parse_shape(const char *s, unsigned *ndim, uint64_t *shape, const char **why)
{
	const char *p = s;
	bool paren = false;
	unsigned n = 0;

	while (*p == ' ')
		p++;
	if (*p == '(') {
		paren = true;
		p++;
	}
	for (;;) {
		char *end;
		unsigned long long v;

		while (*p == ' ')
			p++;
		if (!*p || *p == ')')
			break;
		if (*p < '0' || *p > '9') {
			*why = "sizes are non-negative integers separated by ',' or 'x'";
			return -EINVAL;
		}
		if (n == SHMA_MAXDIM) {
			*why = "at most 32 dimensions";
			return -EINVAL;
		}
		errno = 0;
		v = strtoull(p, &end, 10);
		if (errno || v > (1ull << 60)) {
			*why = "a size is too large";
			return -EINVAL;
		}
		shape[n++] = v;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',' || *p == 'x' || *p == 'X')
			p++;
		else if (*p && *p != ')') {
			*why = "sizes are non-negative integers separated by ',' or 'x'";
			return -EINVAL;
		}
	}
	if (*p == ')') {
		if (!paren) {
			*why = "unbalanced ')'";
			return -EINVAL;
		}
		p++;
	} else if (paren) {
		*why = "missing ')'";
		return -EINVAL;
	}
	while (*p == ' ')
		p++;
	if (*p) {
		*why = "unexpected text after the shape";
		return -EINVAL;
	}
	*ndim = n;
	return 0;
}

/* A type string ("<f8", "|u1", "f8": native order) or a NumPy name
 * ("float64", "uint8", "bool", "complex128"). */
static int parse_dtype(const char *s, struct dtype *dt)
{
	static const struct {
		const char *name, *typestr;
	} names[] = {
		{ "bool", "|b1" },     { "int8", "|i1" },	{ "int16", "=i2" },
		{ "int32", "=i4" },    { "int64", "=i8" },	{ "uint8", "|u1" },
		{ "uint16", "=u2" },   { "uint32", "=u4" },	{ "uint64", "=u8" },
		{ "float16", "=f2" },  { "float32", "=f4" },	{ "float64", "=f8" },
		{ "complex64", "=c8" }, { "complex128", "=c16" },
	};
	char buf[8];
	const char *why;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i].name))
			return dtype_parse(names[i].typestr, dt, &why);
	if (strlen(s) >= 2 && strlen(s) <= 3 && strchr("biufc", s[0])) {
		snprintf(buf, sizeof(buf), "=%s", s);
		return dtype_parse(buf, dt, &why);
	}
	return dtype_parse(s, dt, &why);
}

/* Split "NAME[EXPR]" into name and index expression ("" for the whole). */
static int split_target(const struct cli *cli, const char *arg, char *name, size_t namelen,
			const char **expr, char *ebuf, size_t elen)
{
	const char *br = strchr(arg, '[');
	size_t n = br ? (size_t)(br - arg) : strlen(arg);

	if (n == 0)
		return usage_error(cli, "expected an array name, e.g. a/b or a/b[0:10, ::2]");
	if (n >= namelen)
		return usage_error(cli, "array name too long (at most %zu bytes)", namelen - 1);
	memcpy(name, arg, n);
	name[n] = 0;
	*expr = "";
	if (br) {
		size_t len = strlen(br);

		if (len < 2 || br[len - 1] != ']')
			return usage_error(cli, "\"%s\": an index ends with ']', e.g. %s[0:10, 3]", arg,
					   name);
		if (len - 2 >= elen)
			return usage_error(cli, "index expression too long");
		memcpy(ebuf, br + 1, len - 2);
		ebuf[len - 2] = 0;
		*expr = ebuf;
	}
	return 0;
}

/* ---- the broker ---------------------------------------------------------- */

/* The socket path: -S, else what shma_connect(NULL) would use ($SHMA_SOCKET,
 * then the default configuration's), made absolute so that ArrayRefs name
 * it wherever they are opened. */
static int resolve_socket(struct cli *cli)
{
	const char *p = cli->socket_opt, *xdg = getenv("XDG_RUNTIME_DIR");
	char path[PATH_MAX], cwd[PATH_MAX];
	int n;

	if (!p || !*p)
		p = getenv("SHMA_SOCKET");
	if (p && *p)
		n = snprintf(path, sizeof(path), "%s", p);
	else if (xdg && xdg[0] == '/')
		n = snprintf(path, sizeof(path), "%s/shma/broker.sock", xdg);
	else
		n = snprintf(path, sizeof(path), "/tmp/shma-%u/broker.sock", (unsigned)geteuid());
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	if (path[0] != '/') {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		n = snprintf(cli->socket, sizeof(cli->socket), "%s/%s", cwd, path);
	} else {
		n = snprintf(cli->socket, sizeof(cli->socket), "%s", path);
	}
	return n < 0 || (size_t)n >= sizeof(cli->socket) ? -ENAMETOOLONG : 0;
}

/* Connect (once).  0, or an exit code with the message printed. */
static int need_broker(struct cli *cli)
{
	const struct shma_conn_options opts = { .no_invalidations = true };
	int err;

	if (cli->conn)
		return 0;
	err = resolve_socket(cli);
	if (err)
		return fail(cli, "socket path: %s", strerror(-err));
	err = shma_connect(cli->socket, &opts, &cli->conn);
	if (err == -ENOMEM)
		return fail(cli, "out of memory");
	if (err == -EACCES)
		fprintf(stderr, "shma: %s: the broker at %s refused this user (%s)\n", cli->cmd,
			cli->socket, shma_strerror(err));
	else if (err)
		fprintf(stderr, "shma: %s: cannot reach the broker at %s: %s\n"
			"(start shma-broker, or point to it with -S PATH or SHMA_SOCKET)\n",
			cli->cmd, cli->socket,
			err == SHMA_EDISCONNECTED ? "no broker listens there" : shma_strerror(err));
	return err ? EXIT_UNREACHABLE : 0;
}

/* Open NAME[EXPR] at the snapshot: the array and the view the expression
 * selects.  0 or an exit code. */
static int open_target(struct cli *cli, const char *arg, shma_array **a, struct shma_view *v)
{
	char name[256], ebuf[1024], why[200];
	struct shma_view whole;
	const char *expr;
	int err = split_target(cli, arg, name, sizeof(name), &expr, ebuf, sizeof(ebuf));

	if (err)
		return err;
	err = need_broker(cli);
	if (err)
		return err;
	err = shma_open(cli->conn, name, a);
	if (err)
		return shma_failed(cli, err, NULL);
	err = shma_view_of(*a, &whole);
	if (err) {
		shma_close(a);
		return fail(cli, "%s: %s", name, shma_strerror(err));
	}
	err = shma_view_subscript(&whole, expr, v, why, sizeof(why));
	if (err) {
		char shape[SHAPE_TEXT];

		shma_close(a);
		return usage_error(cli, "%s[%s]: %s (the array's shape is %s)", name, expr,
				   why[0] ? why : shma_strerror(err),
				   fmt_shape(whole.ndim, whole.shape, shape, sizeof(shape)));
	}
	return 0;
}

/* ---- progress ------------------------------------------------------------ */

struct progress {
	bool on;
	const char *what;
	uint64_t total, t0, last; /* bytes, ms */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A bar on stderr, only on a terminal and for transfers worth it. */
static void progress_start(struct progress *p, const struct cli *cli, const char *what,
			   uint64_t total)
{
	p->on = !cli->quiet && total >= PROGRESS_MIN && isatty(STDERR_FILENO);
	p->what = what;
	p->total = total;
	p->t0 = now_ms();
	p->last = 0;
}

static void progress_draw(struct progress *p, uint64_t done)
{
	char a[32], b[32], r[32];
	uint64_t el = now_ms() - p->t0;
	unsigned pct = p->total ? (unsigned)(done * 100 / p->total) : 100, fill = pct * 30 / 100;
	char bar[31];

	memset(bar, '#', fill);
	memset(bar + fill, '.', 30 - fill);
	bar[30] = 0;
	fprintf(stderr, "\r%.24s %3u%% [%s] %s / %s  %s/s ", p->what, pct, bar,
		fmt_bytes(done, a, sizeof(a)), fmt_bytes(p->total, b, sizeof(b)),
		fmt_bytes(el ? done * 1000 / el : 0, r, sizeof(r)));
}

static void progress_update(struct progress *p, uint64_t done)
{
	uint64_t t;

	if (!p->on)
		return;
	t = now_ms();
	if (t - p->last < 100)
		return;
	p->last = t;
	progress_draw(p, done);
}

static void progress_end(struct progress *p, bool ok)
{
	if (!p->on)
		return;
	if (ok) {
		progress_draw(p, p->total);
		fputc('\n', stderr);
	} else {
		fprintf(stderr, "\r\033[K");
	}
}

/* ---- I/O ----------------------------------------------------------------- */

static int write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = write(fd, (const char *)buf + done, len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		done += (size_t)r;
	}
	return 0;
}

/* ---- values -------------------------------------------------------------- */

static uint16_t half_from_float(float f)
{
	uint32_t x, sign, mant, h, rem;
	int32_t e;

	memcpy(&x, &f, 4);
	sign = x >> 16 & 0x8000;
	mant = x & 0x7fffff;
	if ((x >> 23 & 0xff) == 0xff)
		return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
	e = (int32_t)(x >> 23 & 0xff) - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (e <= 0) { /* a subnormal half, or zero */
		uint32_t shift;

		if (e < -10)
			return (uint16_t)sign;
		mant |= 0x800000;
		shift = (uint32_t)(14 - e);
		h = mant >> shift;
		rem = mant & ((1u << shift) - 1);
		if (rem > 1u << (shift - 1) || (rem == 1u << (shift - 1) && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
	h = (uint32_t)e << 10 | mant >> 13;
	rem = mant & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++; /* a carry into the exponent is right, up to infinity */
	return (uint16_t)(sign | h);
}

static double half_to_double(uint16_t h)
{
	unsigned e = h >> 10 & 0x1f, m = h & 0x3ff;
	double v;

	if (e == 0)
		v = ldexp(m, -24);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(m | 0x400, (int)e - 25);
	return h & 0x8000 ? -v : v;
}

/* The shortest text that reads back as the same value of `size` bytes (2, 4
 * or 8), the way Python's repr() writes floats: positional for exponents
 * -4 to 15 ("1.0", "0.1", "65500.0"), else scientific ("1e-05", "1e+16");
 * "inf", "-inf", "nan". */
static void fmt_float(double v, unsigned size, uint16_t bits16, char *buf, size_t len)
{
	char sci[40], digits[24], *p = digits;
	const char *sign;
	int prec, exp;
	size_t n;

	if (isnan(v)) {
		snprintf(buf, len, "nan");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, len, "%sinf", v < 0 ? "-" : "");
		return;
	}
	for (prec = 1; prec <= 17; prec++) {
		double back;

		snprintf(sci, sizeof(sci), "%.*e", prec - 1, v);
		back = strtod(sci, NULL);
		if (size == 8 ? back == v
		    : size == 4 ? (float)back == (float)v
				: half_from_float((float)back) == bits16)
			break;
	}
	/* sci is [-]D[.DDD]e[+-]XX: the digits and the exponent */
	exp = atoi(strchr(sci, 'e') + 1);
	for (const char *q = sci; *q != 'e'; q++)
		if (*q >= '0' && *q <= '9')
			*p++ = *q;
	*p = 0;
	while (p > digits + 1 && p[-1] == '0') /* 1.50e+00 -> "15" */
		*--p = 0;
	sign = sci[0] == '-' ? "-" : "";
	n = strlen(digits);
	if (exp < -4 || exp >= 16)
		snprintf(buf, len, "%s%c%s%se%c%02d", sign, digits[0], n > 1 ? "." : "", digits + 1,
			 exp < 0 ? '-' : '+', abs(exp));
	else if (exp < 0)
		snprintf(buf, len, "%s0.%.*s%s", sign, -exp - 1, "000", digits);
	else if (n <= (size_t)exp + 1)
		snprintf(buf, len, "%s%s%.*s.0", sign, digits, (int)((size_t)exp + 1 - n),
			 "0000000000000000");
	else
		snprintf(buf, len, "%s%.*s.%s", sign, exp + 1, digits, digits + exp + 1);
}

/* Bytes of an item in host order. */
static void load(const char *p, unsigned size, bool swap, void *out)
{
	unsigned char *o = out;

	if (!swap) {
		memcpy(out, p, size);
		return;
	}
	for (unsigned i = 0; i < size; i++)
		o[i] = (unsigned char)p[size - 1 - i];
}

/* An integer of `size` bytes at p, zero-extended. */
static uint64_t load_uint(const char *p, unsigned size, bool swap)
{
	uint16_t h;
	uint32_t w;
	uint64_t q;

	switch (size) {
	case 1:
		return (unsigned char)*p;
	case 2:
		load(p, 2, swap, &h);
		return h;
	case 4:
		load(p, 4, swap, &w);
		return w;
	default:
		load(p, 8, swap, &q);
		return q;
	}
}

/* A float of `size` bytes at p as a double (bits16: a half's bits). */
static double load_float(const char *p, unsigned size, bool swap, uint16_t *bits16)
{
	uint16_t h;
	float f;
	double d;

	switch (size) {
	case 2:
		load(p, 2, swap, &h);
		*bits16 = h;
		return half_to_double(h);
	case 4:
		load(p, 4, swap, &f);
		return f;
	default:
		load(p, 8, swap, &d);
		return d;
	}
}

/* Format one item; json: JSON text (true/false, NaN and infinities as
 * strings, complex as [re, im]). */
static void fmt_item(const char *p, const struct dtype *dt, bool json, char *buf, size_t len)
{
	bool swap = dt->size > 1 && dt->big_endian != (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__);
	uint16_t b16 = 0;

	switch (dt->kind) {
	case 'b':
		snprintf(buf, len, "%s", *p ? (json ? "true" : "True") : (json ? "false" : "False"));
		return;
	case 'i': {
		uint64_t u = load_uint(p, dt->size, swap);
		int64_t v = dt->size == 1 ? (int8_t)u : dt->size == 2 ? (int16_t)u :
			    dt->size == 4 ? (int32_t)u : (int64_t)u;

		snprintf(buf, len, "%" PRId64, v);
		return;
	}
	case 'u':
		snprintf(buf, len, "%" PRIu64, load_uint(p, dt->size, swap));
		return;
	case 'f': {
		double v = load_float(p, dt->size, swap, &b16);
		char t[48];

		fmt_float(v, dt->size, b16, t, sizeof(t));
		snprintf(buf, len, json && !isfinite(v) ? "\"%s\"" : "%s", t);
		return;
	}
	default: { /* complex: two floats of half the size */
		unsigned h = dt->size / 2;
		double re = load_float(p, h, swap, &b16), im = load_float(p + h, h, swap, &b16);
		char r[48], i[48];

		fmt_float(re, h, 0, r, sizeof(r));
		fmt_float(im, h, 0, i, sizeof(i));
		if (json)
			snprintf(buf, len, "[%s%s%s, %s%s%s]", isfinite(re) ? "" : "\"", r,
				 isfinite(re) ? "" : "\"", isfinite(im) ? "" : "\"", i,
				 isfinite(im) ? "" : "\"");
		else
			snprintf(buf, len, "%s%s%sj", r, i[0] == '-' ? "" : "+", i);
		return;
	}
	}
}

/* Printing an array, NumPy's str() style or JSON: a first pass measures
 * the widest item, the second prints. */
struct printer {
	const struct shma_view *v;
	struct dtype dt;
	bool json, summarize, measure;
	size_t width; /* widest item */
	size_t col;   /* current column */
	FILE *out;
};

static void put(struct printer *p, const char *s)
{
	if (!p->measure) {
		fputs(s, p->out);
		p->col += strlen(s);
	}
}

static void newline(struct printer *p, unsigned n, unsigned indent)
{
	if (p->measure)
		return;
	while (n--)
		fputc('\n', p->out);
	for (unsigned i = 0; i < indent; i++)
		fputc(' ', p->out);
	p->col = indent;
}

static void print_rec(struct printer *p, unsigned axis, const char *ptr, unsigned indent)
{
	const struct shma_view *v = p->v;
	uint64_t n = v->shape[axis];
	bool last = axis + 1 == v->ndim, cut = p->summarize && n > 2 * GET_EDGE;
	char item[ITEM_MAX];

	put(p, "[");
	for (uint64_t i = 0; i < n; i++) {
		const char *q = ptr + (int64_t)i * v->strides[axis];

		if (last) {
			const char *s = item;
			size_t w;

			if (cut && i == GET_EDGE) {
				s = "...";
				i = n - GET_EDGE - 1;
			} else {
				fmt_item(q, &p->dt, p->json, item, sizeof(item));
			}
			w = p->json ? strlen(s) : p->width;
			if (p->measure) {
				if (s == item && strlen(s) > p->width)
					p->width = strlen(s);
				continue;
			}
			if (i > 0 || s != item) {
				if (p->json) {
					put(p, ", ");
				} else if (p->col + 1 + w + axis + 1 > LINE_WIDTH) {
					newline(p, 1, indent + 1);
				} else {
					put(p, " ");
				}
			}
			if (!p->json && s == item)
				for (size_t k = strlen(s); k < w; k++)
					put(p, " ");
			put(p, s);
			continue;
		}
		if (i > 0) {
			if (p->json)
				put(p, ", ");
			else
				newline(p, v->ndim - axis - 1, indent + 1);
		}
		if (cut && i == GET_EDGE) {
			put(p, "...");
			if (!p->json)
				newline(p, v->ndim - axis - 1, indent + 1);
			i = n - GET_EDGE;
			q = ptr + (int64_t)i * v->strides[axis];
		}
		print_rec(p, axis + 1, q, indent + 1);
	}
	put(p, "]");
}

static void print_values(const struct shma_view *v, bool json, bool all, FILE *out)
{
	struct printer p = { .v = v, .json = json, .out = out };
	const char *why;
	char item[ITEM_MAX];

	dtype_parse(v->dtype, &p.dt, &why);
	if (v->ndim == 0) {
		fmt_item(v->data, &p.dt, json, item, sizeof(item));
		fprintf(out, "%s\n", item);
		return;
	}
	p.summarize = !all && shma_view_size(v) > GET_THRESHOLD;
	if (!json) {
		p.measure = true;
		print_rec(&p, 0, v->data, 0);
		p.measure = false;
	}
	print_rec(&p, 0, v->data, 0);
	fputc('\n', out);
}

/* ---- commands ------------------------------------------------------------ */

/* Options every command takes. */
#define COMMON_SHORT ":hS:vq"
#define COMMON_LONG                                                                          \
	{ "help", no_argument, NULL, 'h' }, { "socket", required_argument, NULL, 'S' },     \
		{ "verbose", no_argument, NULL, 'v' }, { "quiet", no_argument, NULL, 'q' }

static int help_for(const char *name, FILE *out);

static char **cur_argv; /* the argv getopt is parsing, for messages */

/* The option getopt just complained about. */
static const char *argv_opt(void)
{
	static char buf[8];

	if (optopt) {
		snprintf(buf, sizeof(buf), "-%c", optopt);
		return buf;
	}
	return optind > 0 && cur_argv ? cur_argv[optind - 1] : "?";
}

/* Handle an option every command takes (or getopt's complaint): true if
 * the command must stop now with exit code *code (after --help, or a usage
 * error). */
static bool common_opt(struct cli *cli, int c, int *code)
{
	switch (c) {
	case 'h':
		*code = help_for(cli->cmd, stdout);
		return true;
	case 'S':
		cli->socket_opt = optarg;
		return false;
	case 'v':
		cli->verbose = true;
		return false;
	case 'q':
		cli->quiet = true;
		return false;
	case ':':
		*code = usage_error(cli, "option %s needs an argument", argv_opt());
		return true;
	default:
		*code = usage_error(cli, "unknown option %s", argv_opt());
		return true;
	}
}

/* The positional arguments must number between min and max. */
static int want_args(const struct cli *cli, int n, int min, int max)
{
	if (n < min)
		return usage_error(cli, "missing argument");
	if (n > max)
		return usage_error(cli, "too many arguments");
	return 0;
}

static json_t *stat_json(const struct shma_array_stat *st)
{
	json_t *o = json_pack("{s:s,s:s,s:o,s:s#,s:o,s:o,s:o,s:o,s:o}", "name", st->name, "dtype",
			      st->dtype, "shape", json_shape(st->ndim, st->shape), "order",
			      &st->order, 1, "nbytes", json_u64(st->nbytes), "block_size",
			      json_u64(st->block_size), "nblocks", json_u64(st->nblocks), "created",
			      json_u64(st->created), "id", json_u64(st->id));

	if (o && st->blocks_stored != SHMA_UNKNOWN)
		json_object_set_new(o, "blocks_stored", json_u64(st->blocks_stored));
	return o;
}

static int cmd_ls(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = { COMMON_LONG, { "json", no_argument, NULL, 'j' },
						   { NULL, 0, NULL, 0 } };
	struct shma_array_stat *arr = NULL;
	size_t n = 0, w[4] = { 4, 5, 5, 0 };
	bool json = false;
	uint64_t rev;
	json_t *list;
	int c, err;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "j", longopts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (common_opt(cli, c, &err))
			return err;
	}
	err = need_broker(cli);
	if (err)
		return err;
	err = shma_list(cli->conn, &arr, &n, &rev);
	if (err)
		return shma_failed(cli, err, NULL);
	/* keep those matching any pattern given */
	if (optind < argc) {
		size_t k = 0;

		for (size_t i = 0; i < n; i++)
			for (int j = optind; j < argc; j++)
				if (!fnmatch(argv[j], arr[i].name, 0)) {
					arr[k++] = arr[i];
					break;
				}
		n = k;
	}
	if (json) {
		list = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(list, stat_json(&arr[i]));
		print_json(json_pack("{s:o,s:o}", "revision", json_u64(rev), "arrays", list));
		free(arr);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		char shape[SHAPE_TEXT];
		size_t l = strlen(arr[i].name), s = strlen(
			fmt_shape(arr[i].ndim, arr[i].shape, shape, sizeof(shape)));

		w[0] = l > w[0] ? l : w[0];
		w[2] = s > w[2] ? s : w[2];
	}
	if (n)
		printf("%-*s  %-5s  %-*s  %-5s  %s\n", (int)w[0], "NAME", "DTYPE", (int)w[2], "SHAPE",
		       "ORDER", "SIZE");
	for (size_t i = 0; i < n; i++) {
		char shape[SHAPE_TEXT], size[32];

		printf("%-*s  %-5s  %-*s  %-5c  %s\n", (int)w[0], arr[i].name, arr[i].dtype,
		       (int)w[2], fmt_shape(arr[i].ndim, arr[i].shape, shape, sizeof(shape)),
		       arr[i].order, fmt_bytes(arr[i].nbytes, size, sizeof(size)));
	}
	free(arr);
	return 0;
}

static void print_stat(const struct shma_array_stat *st, uint64_t rev)
{
	char shape[SHAPE_TEXT], a[32], b[32];
	uint64_t stored = st->blocks_stored * st->block_size;

	if (stored > st->nbytes)
		stored = st->nbytes; /* the last block is partly past the end */
	printf("name:        %s\n", st->name);
	printf("dtype:       %s (%s)\n", st->dtype, dtype_words(st->dtype));
	printf("shape:       %s\n", fmt_shape(st->ndim, st->shape, shape, sizeof(shape)));
	printf("order:       %c\n", st->order);
	printf("size:        %" PRIu64 " bytes (%s)\n", st->nbytes, fmt_bytes(st->nbytes, a, sizeof(a)));
	printf("block size:  %zu bytes (%s)\n", st->block_size,
	       fmt_bytes(st->block_size, b, sizeof(b)));
	printf("blocks:      %" PRIu64 ", %" PRIu64 " stored (%.1f%%), %" PRIu64 " holes\n",
	       st->nblocks, st->blocks_stored,
	       st->nblocks ? 100.0 * (double)st->blocks_stored / (double)st->nblocks : 0.0,
	       st->nblocks - st->blocks_stored);
	printf("stored:      %s in the pool\n", fmt_bytes(stored, a, sizeof(a)));
	printf("created at:  revision %" PRIu64 " (incarnation %" PRIu64 ")\n", st->created, st->id);
	printf("revision:    %" PRIu64 "\n", rev);
}

static int cmd_stat(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = { COMMON_LONG, { "json", no_argument, NULL, 'j' },
						   { NULL, 0, NULL, 0 } };
	struct shma_array_stat *arr = NULL, st;
	const char **names = NULL;
	size_t n = 0;
	bool json = false;
	json_t *list = NULL;
	uint64_t rev = 0;
	int c, err, code = 0;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "j", longopts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (common_opt(cli, c, &err))
			return err;
	}
	err = need_broker(cli);
	if (err)
		return err;
	if (optind < argc) {
		n = (size_t)(argc - optind);
		names = (const char **)(argv + optind);
	} else {
		/* every array */
		err = shma_list(cli->conn, &arr, &n, &rev);
		if (err)
			return shma_failed(cli, err, NULL);
		names = calloc(n ? n : 1, sizeof(*names));
		if (!names) {
			free(arr);
			return fail(cli, "out of memory");
		}
		for (size_t i = 0; i < n; i++)
			names[i] = arr[i].name;
	}
	if (json)
		list = json_array();
	for (size_t i = 0; i < n; i++) {
		err = shma_stat(cli->conn, names[i], &st, &rev);
		if (err) {
			code = shma_failed(cli, err, NULL);
			if (code == EXIT_UNREACHABLE)
				break;
			continue;
		}
		if (json) {
			json_t *o = stat_json(&st);

			json_object_set_new(o, "revision", json_u64(rev));
			json_array_append_new(list, o);
		} else {
			if (i)
				printf("\n");
			print_stat(&st, rev);
		}
	}
	if (json && !(optind + 1 == argc && code)) {
		if (optind + 1 == argc)
			print_json(json_incref(json_array_get(list, 0)));
		else
			print_json(json_incref(list));
	}
	json_decref(list);
	if (!arr)
		names = NULL; /* argv's */
	free(names);
	free(arr);
	return code;
}

static int cmd_create(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONG,
		{ "dtype", required_argument, NULL, 'd' },
		{ "shape", required_argument, NULL, 's' },
		{ "order", required_argument, NULL, 'o' },
		{ "block-size", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dts = "<f8", *shs = NULL, *why = "";
	uint64_t shape[SHMA_MAXDIM], bs = 0, rev;
	unsigned ndim = 0;
	struct dtype dt;
	char order = 'C';
	int c, err;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "d:s:o:b:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dts = optarg;
			break;
		case 's':
			shs = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "C") && strcmp(optarg, "F") && strcmp(optarg, "c") &&
			    strcmp(optarg, "f"))
				return usage_error(cli, "--order is C or F");
			order = (char)(optarg[0] & ~0x20);
			break;
		case 'b':
			if (parse_bytes(optarg, &bs) || bs < 4096 || (bs & (bs - 1)))
				return usage_error(cli, "--block-size must be a power of two >= 4096 "
						   "(e.g. 64KiB, 2MiB), not \"%s\"", optarg);
			break;
		default:
			if (common_opt(cli, c, &err))
				return err;
		}
	}
	err = want_args(cli, argc - optind, 1, 1);
	if (err)
		return err;
	if (!shs)
		return usage_error(cli, "--shape is required (e.g. --shape 1000,1000)");
	if (parse_shape(shs, &ndim, shape, &why))
		return usage_error(cli, "bad --shape \"%s\": %s", shs, why);
	if (parse_dtype(dts, &dt))
		return usage_error(cli, "bad --dtype \"%s\": a NumPy type string (<f8, |u1, >i4, "
				   "c16...) or name (float64, uint8, bool...)", dts);
	err = need_broker(cli);
	if (err)
		return err;
	err = shma_create(cli->conn, argv[optind], dt.str, ndim, shape, order, (size_t)bs, &rev);
	if (err)
		return shma_failed(cli, err, argv[optind]);
	if (cli->verbose)
		printf("created \"%s\" at revision %" PRIu64 "\n", argv[optind], rev);
	return 0;
}

static int cmd_rm(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = { COMMON_LONG, { "force", no_argument, NULL, 'f' },
						   { NULL, 0, NULL, 0 } };
	bool force = false;
	int c, err, code = 0;
	uint64_t rev;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "f", longopts, NULL)) != -1) {
		if (c == 'f')
			force = true;
		else if (common_opt(cli, c, &err))
			return err;
	}
	err = want_args(cli, argc - optind, 1, INT_MAX);
	if (err)
		return err;
	err = need_broker(cli);
	if (err)
		return err;
	for (int i = optind; i < argc; i++) {
		err = shma_delete(cli->conn, argv[i], &rev);
		if (err == -ENOENT && force)
			continue;
		if (err) {
			code = shma_failed(cli, err, NULL);
			if (code == EXIT_UNREACHABLE)
				return code;
			continue;
		}
		if (cli->verbose)
			printf("deleted \"%s\" at revision %" PRIu64 "\n", argv[i], rev);
	}
	return code;
}

/* Say what is wrong with a .npy file. */
static int npy_failed(const struct cli *cli, const char *file, const struct npy_error *e)
{
	if (e->fault == NPY_IO)
		return fail(cli, "%s: %s", file, e->text);
	return fail(cli, "%s: %s: %s (at byte %" PRIu64 ")", file, npy_fault_name(e->fault), e->text,
		    e->offset);
}

/* Copy h->nbytes from fd into the array, committing every `chunk` bytes. */
static int import_data(struct cli *cli, const char *file, int fd, const struct npy_header *h,
		       shma_array *a, uint64_t chunk, uint64_t *rev, bool *published)
{
	char *data = shma_array_data(a);
	struct progress pr;
	uint64_t done = 0, since = 0;
	int err;

	progress_start(&pr, cli, file, h->nbytes);
	while (done < h->nbytes) {
		uint64_t len = h->nbytes - done;
		ssize_t n;

		if (len > IO_STEP)
			len = IO_STEP;
		if (len > chunk - since) /* commits fall on chunk boundaries */
			len = chunk - since;
		err = shma_prefault(data + done, len, SHMA_PREFAULT_WRITE);
		if (err) {
			progress_end(&pr, false);
			return fail(cli, "cannot fill the array: %s", shma_strerror(err));
		}
		n = npy_read_full(fd, data + done, (size_t)len);
		if (n < 0) {
			progress_end(&pr, false);
			return fail(cli, "%s: %s", file, strerror((int)-n));
		}
		done += (uint64_t)n;
		since += (uint64_t)n;
		if ((uint64_t)n < len) {
			progress_end(&pr, false);
			return fail(cli, "%s: truncated: the header promises %" PRIu64 " bytes of "
				    "data, the file holds %" PRIu64 " (at byte %" PRIu64 ")",
				    file, h->nbytes, done, h->data_offset + done);
		}
		if (since >= chunk && done < h->nbytes) {
			err = shma_commit(cli->conn, rev);
			if (err) {
				progress_end(&pr, false);
				return shma_failed(cli, err, "commit");
			}
			*published = true;
			since = 0;
		}
		progress_update(&pr, done);
	}
	err = shma_commit(cli->conn, rev);
	progress_end(&pr, !err);
	if (err)
		return shma_failed(cli, err, "commit");
	*published = true;
	return 0;
}

static int cmd_import(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONG,
		{ "block-size", required_argument, NULL, 'b' },
		{ "force", no_argument, NULL, 'f' },
		{ "chunk", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t bs = 0, chunk = DEFAULT_CHUNK, rev = 0;
	const char *file, *name;
	struct shma_array_stat old;
	struct npy_header h;
	struct npy_error e;
	shma_array *a = NULL;
	bool force = false, published = false;
	struct stat sb;
	int c, fd, err, code;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "b:fc:", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (parse_bytes(optarg, &bs) || bs < 4096 || (bs & (bs - 1)))
				return usage_error(cli, "--block-size must be a power of two >= 4096 "
						   "(e.g. 64KiB, 2MiB), not \"%s\"", optarg);
			break;
		case 'f':
			force = true;
			break;
		case 'c':
			if (parse_bytes(optarg, &chunk) || chunk == 0)
				return usage_error(cli, "--chunk takes a size, e.g. 256MiB");
			break;
		default:
			if (common_opt(cli, c, &err))
				return err;
		}
	}
	err = want_args(cli, argc - optind, 2, 2);
	if (err)
		return err;
	file = argv[optind];
	name = argv[optind + 1];
	fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
	if (fd < 0)
		return fail(cli, "cannot open %s: %s", file, strerror(errno));
	err = npy_read_header(fd, &h, &e);
	if (err) {
		code = npy_failed(cli, file, &e);
		goto out_close;
	}
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    npy_check_size(&h, (uint64_t)sb.st_size, &e)) {
		code = npy_failed(cli, file, &e);
		goto out_close;
	}
	code = need_broker(cli);
	if (code)
		goto out_close;
	/* an existing array: refused (or replaced) before reading any data */
	err = shma_stat(cli->conn, name, &old, NULL);
	if (!err && !force) {
		code = fail(cli, "array \"%s\" exists (use --force to replace it)", name);
		goto out_close;
	}
	if (!err) {
		err = shma_delete(cli->conn, name, NULL);
		if (!err)
			err = shma_sync(cli->conn, NULL); /* to a snapshot without it */
	}
	if (err && err != -ENOENT) {
		code = shma_failed(cli, err, name);
		goto out_close;
	}
	/* created by the first commit, with the first chunk of data: a file
	 * of one chunk appears whole, atomically */
	err = shma_create_tx(cli->conn, name, h.descr, h.ndim, h.shape,
			     h.fortran_order ? 'F' : 'C', (size_t)bs, &a);
	if (err) {
		code = shma_failed(cli, err, name);
		goto out_close;
	}
	code = import_data(cli, file, fd, &h, a, chunk, &rev, &published);
	if (code)
		goto out_undo;
	shma_close(&a);
	if (cli->verbose) {
		char shape[SHAPE_TEXT], size[32];

		printf("imported %s as \"%s\": %s %s %c order, %s, revision %" PRIu64 "\n", file, name,
		       h.descr, fmt_shape(h.ndim, h.shape, shape, sizeof(shape)),
		       h.fortran_order ? 'F' : 'C', fmt_bytes(h.nbytes, size, sizeof(size)), rev);
	}
	goto out_close;

out_undo:
	/* leave nothing half-imported behind */
	shma_close(&a);
	shma_abort(cli->conn);
	if (published && code != EXIT_UNREACHABLE)
		shma_delete(cli->conn, name, NULL);
out_close:
	if (fd != STDIN_FILENO)
		close(fd);
	return code;
}

/* Is v Fortran-contiguous (its transpose C-contiguous)? */
static bool is_f_contiguous(const struct shma_view *v)
{
	struct shma_view t;

	return shma_view_transpose(v, NULL, &t) == 0 && shma_view_is_contiguous(&t);
}

/* Write the items of v in C order, gathering them through a buffer. */
static int write_gathered(int fd, const struct shma_view *v, struct progress *pr)
{
	size_t cap = IO_STEP, used = 0, isz = v->itemsize;
	uint64_t idx[SHMA_MAXDIM] = { 0 }, total = shma_view_size(v), done = 0;
	char *buf;
	int err = 0;

	if (total == 0)
		return 0;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	if (v->ndim == 0) {
		memcpy(buf, v->data, isz);
		err = write_full(fd, buf, isz);
		free(buf);
		return err;
	}
	for (;;) {
		/* one run along the last axis */
		const char *p = v->data;
		unsigned last = v->ndim - 1;

		for (unsigned k = 0; k < last; k++)
			p += (int64_t)idx[k] * v->strides[k];
		for (uint64_t i = 0; i < v->shape[last]; i++) {
			if (used + isz > cap) {
				err = write_full(fd, buf, used);
				if (err)
					goto out;
				done += used;
				used = 0;
				progress_update(pr, done);
			}
			memcpy(buf + used, p + (int64_t)i * v->strides[last], isz);
			used += isz;
		}
		/* the next index, last axis excluded */
		unsigned k = last;

		while (k > 0 && ++idx[k - 1] == v->shape[k - 1])
			idx[--k] = 0;
		if (k == 0)
			break;
	}
	err = write_full(fd, buf, used);
out:
	free(buf);
	return err;
}

/* Write nbytes at p (array memory: made resident before each write). */
static int write_direct(int fd, const char *p, uint64_t nbytes, struct progress *pr)
{
	uint64_t done = 0;
	int err;

	while (done < nbytes) {
		size_t len = nbytes - done < IO_STEP ? (size_t)(nbytes - done) : IO_STEP;

		err = shma_prefault((void *)(p + done), len, 0);
		if (err)
			return err;
		err = write_full(fd, p + done, len);
		if (err)
			return err;
		done += len;
		progress_update(pr, done);
	}
	return 0;
}

static int cmd_export(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONG,
		{ "npy-version", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	char header[4096], tmp[PATH_MAX];
	const char *file;
	struct shma_view v, t;
	struct progress pr;
	shma_array *a = NULL;
	unsigned major = 0;
	uint64_t nbytes;
	size_t hlen;
	bool fortran = false, to_stdout;
	int c, fd, err, code;
	mode_t um;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "n:", longopts, NULL)) != -1) {
		if (c == 'n') {
			if (strcmp(optarg, "1") && strcmp(optarg, "2") && strcmp(optarg, "3") &&
			    strcmp(optarg, "1.0") && strcmp(optarg, "2.0") && strcmp(optarg, "3.0"))
				return usage_error(cli, "--npy-version is 1, 2 or 3");
			major = (unsigned)(optarg[0] - '0');
		} else if (common_opt(cli, c, &err)) {
			return err;
		}
	}
	err = want_args(cli, argc - optind, 2, 2);
	if (err)
		return err;
	file = argv[optind + 1];
	to_stdout = !strcmp(file, "-");
	code = open_target(cli, argv[optind], &a, &v);
	if (code)
		return code;
	/* an F-order array (or F-contiguous view) is written as it lies */
	if (v.ndim > 1 && !shma_view_is_contiguous(&v) && is_f_contiguous(&v))
		fortran = true;
	err = npy_format_header(v.dtype, fortran, v.ndim, v.shape, major, header, sizeof(header),
				&hlen);
	if (err) {
		code = fail(cli, "cannot write a version %u header for this array: %s", major,
			    strerror(-err));
		goto out_close;
	}
	if (to_stdout) {
		fd = STDOUT_FILENO;
	} else {
		/* a temporary file, renamed at the end: no half-written FILE */
		if ((size_t)snprintf(tmp, sizeof(tmp), "%s.shma-XXXXXX", file) >= sizeof(tmp)) {
			code = fail(cli, "%s: file name too long", file);
			goto out_close;
		}
		fd = mkostemp(tmp, O_CLOEXEC);
		if (fd < 0) {
			code = fail(cli, "cannot create %s: %s", file, strerror(errno));
			goto out_close;
		}
		um = umask(0);
		umask(um);
		if (fchmod(fd, 0666 & ~um) < 0) { /* as a plain open() would */
			code = fail(cli, "%s: %s", tmp, strerror(errno));
			close(fd);
			unlink(tmp);
			goto out_close;
		}
	}
	nbytes = shma_view_size(&v) * v.itemsize;
	progress_start(&pr, cli, file, nbytes);
	if (to_stdout)
		pr.on = false;
	err = write_full(fd, header, hlen);
	if (!err) {
		if (shma_view_size(&v) == 0)
			err = 0;
		else if (shma_view_is_contiguous(&v))
			err = write_direct(fd, v.data, nbytes, &pr);
		else if (fortran && shma_view_transpose(&v, NULL, &t) == 0)
			err = write_direct(fd, t.data, nbytes, &pr);
		else
			err = write_gathered(fd, &v, &pr);
	}
	if (!err && !to_stdout && fsync(fd) < 0)
		err = -errno;
	if (!to_stdout && close(fd) < 0 && !err)
		err = -errno;
	progress_end(&pr, !err);
	if (!err && !to_stdout && rename(tmp, file) < 0)
		err = -errno;
	if (err) {
		if (!to_stdout)
			unlink(tmp);
		code = fail(cli, "cannot write %s: %s", file, shma_strerror(err));
		goto out_close;
	}
	if (cli->verbose) {
		char shape[SHAPE_TEXT], size[32];

		fprintf(to_stdout ? stderr : stdout, "exported \"%s\" (revision %" PRIu64 ") to %s: "
			"%s %s %c order, %s\n", argv[optind], shma_array_revision(a), file, v.dtype,
			fmt_shape(v.ndim, v.shape, shape, sizeof(shape)), fortran ? 'F' : 'C',
			fmt_bytes(nbytes, size, sizeof(size)));
	}
out_close:
	shma_close(&a);
	return code;
}

static int cmd_ref(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = { COMMON_LONG,
						   { "lease", required_argument, NULL, 'l' },
						   { NULL, 0, NULL, 0 } };
	struct shma_view v;
	struct shma_ref r;
	shma_array *a = NULL;
	unsigned lease_ms = 0;
	char *json;
	size_t len;
	int c, err, code;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "l:", longopts, NULL)) != -1) {
		if (c == 'l') {
			char *end;
			double s = strtod(optarg, &end);

			if (end == optarg || *end || !(s > 0) || s > 3600)
				return usage_error(cli, "--lease takes seconds, 0 < S <= 3600");
			lease_ms = (unsigned)ceil(s * 1000);
		} else if (common_opt(cli, c, &err)) {
			return err;
		}
	}
	err = want_args(cli, argc - optind, 1, 1);
	if (err)
		return err;
	code = open_target(cli, argv[optind], &a, &v);
	if (code)
		return code;
	err = shma_ref_make(&v, &r);
	if (!err && lease_ms)
		err = shma_lease(cli->conn, r.revision, lease_ms);
	if (!err)
		err = shma_ref_encode(&r, &json, &len);
	if (err) {
		code = shma_failed(cli, err, NULL);
	} else {
		printf("%s\n", json);
		free(json);
	}
	shma_close(&a);
	return code;
}

static int cmd_get(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = { COMMON_LONG, { "all", no_argument, NULL, 'a' },
						   { "json", no_argument, NULL, 'j' },
						   { NULL, 0, NULL, 0 } };
	bool all = false, json = false;
	struct shma_view v;
	shma_array *a = NULL;
	int c, err, code;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "aj", longopts, NULL)) != -1) {
		if (c == 'a')
			all = true;
		else if (c == 'j')
			json = true;
		else if (common_opt(cli, c, &err))
			return err;
	}
	err = want_args(cli, argc - optind, 1, 1);
	if (err)
		return err;
	code = open_target(cli, argv[optind], &a, &v);
	if (code)
		return code;
	if (json && !all && shma_view_size(&v) > GET_THRESHOLD) {
		shma_close(&a);
		return fail(cli, "%s has %" PRIu64 " items: JSON output prints them all, so select "
			    "fewer or pass --all", argv[optind], shma_view_size(&v));
	}
	print_values(&v, json, all, stdout);
	shma_close(&a);
	return 0;
}

static int cmd_broker_status(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = { COMMON_LONG, { "json", no_argument, NULL, 'j' },
						   { NULL, 0, NULL, 0 } };
	struct shma_broker_stats st;
	char a[32], b[32];
	bool json = false;
	int c, err;

	while ((c = getopt_long(argc, argv, COMMON_SHORT "j", longopts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (common_opt(cli, c, &err))
			return err;
	}
	err = want_args(cli, argc - optind, 0, 0);
	if (err)
		return err;
	err = need_broker(cli);
	if (err)
		return err;
	err = shma_broker_stats(cli->conn, &st);
	if (err)
		return shma_failed(cli, err, NULL);
	if (json) {
		print_json(json_pack(
			"{s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "socket",
			cli->socket, "pool_size", json_u64(st.pool_size), "pool_used",
			json_u64(st.pool_used), "slots", json_u64(st.slots), "head", json_u64(st.head),
			"oldest_kept", json_u64(st.oldest_kept), "revisions_kept",
			json_u64(st.revisions_kept), "pins", json_u64(st.pins), "arrays",
			json_u64(st.arrays), "incarnations", json_u64(st.incarnations), "versions",
			json_u64(st.versions), "clients", json_u64(st.clients), "commits",
			json_u64(st.commits), "conflicts", json_u64(st.conflicts), "uptime_ms",
			json_u64(st.uptime_ms), "leases", json_u64(st.leases)));
		return 0;
	}
	printf("broker:          %s\n", cli->socket);
	printf("uptime:          %.1f s\n", (double)st.uptime_ms / 1000);
	printf("pool:            %s of %s used (%.1f%%), %" PRIu64 " slots\n",
	       fmt_bytes(st.pool_used, a, sizeof(a)), fmt_bytes(st.pool_size, b, sizeof(b)),
	       st.pool_size ? 100.0 * (double)st.pool_used / (double)st.pool_size : 0.0, st.slots);
	printf("head revision:   %" PRIu64 "\n", st.head);
	printf("revisions kept:  %" PRIu64 " (oldest kept: %" PRIu64 ")\n", st.revisions_kept,
	       st.oldest_kept);
	printf("arrays:          %" PRIu64 " live, %" PRIu64 " incarnations held, %" PRIu64
	       " block versions\n", st.arrays, st.incarnations, st.versions);
	printf("clients:         %" PRIu64 " (this one included)\n", st.clients);
	printf("pins:            %" PRIu64 ", leases: %" PRIu64 "\n", st.pins, st.leases);
	printf("commits:         %" PRIu64 ", conflicts: %" PRIu64 "\n", st.commits, st.conflicts);
	return 0;
}

/* ---- the command table and help ----------------------------------------- */

struct command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
	const char *synopsis; /* after "shma NAME " */
	const char *summary;
	const char *help; /* description and options */
};

#define OPT_COMMON                                                                           \
	"  -S, --socket PATH  the broker's socket (default: $SHMA_SOCKET, else\n"           \
	"                     $XDG_RUNTIME_DIR/shma/broker.sock or /tmp/shma-UID/broker.sock)\n" \
	"  -h, --help         this help\n"

static const struct command commands[] = {
	{ "ls", cmd_ls, "[--json] [PATTERN...]", "list the arrays",
	  "List the arrays at the broker's newest revision: name, dtype, shape, order\n"
	  "and size.  PATTERNs (shell globs, quote them) keep only matching names.\n"
	  "\n"
	  "  --json             print {\"revision\": R, \"arrays\": [{name, dtype, shape,\n"
	  "                     order, nbytes, block_size, nblocks, created, id}...]}\n" OPT_COMMON },
	{ "stat", cmd_stat, "[--json] [ARRAY...]", "show arrays in detail",
	  "Show each ARRAY (every array without one) in detail: dtype, shape, order,\n"
	  "size, block size, how many blocks are stored (the rest are holes, reading\n"
	  "as zeros and costing nothing), the revision that created it, and the\n"
	  "revision looked at.\n"
	  "\n"
	  "  --json             one JSON object for one ARRAY, else a list of them\n" OPT_COMMON },
	{ "create", cmd_create, "NAME --shape SHAPE [--dtype DTYPE] [--order C|F] [--block-size SIZE]",
	  "create an array of zeros",
	  "Create array NAME, all zeros (holes), as a new revision.\n"
	  "\n"
	  "  -s, --shape SHAPE      sizes: 1000,1000 or 1000x1000 or \"(1000, 1000)\";\n"
	  "                         \"()\" for a 0-d array\n"
	  "  -d, --dtype DTYPE      a NumPy type string (<f8, >i4, |u1, |b1, <c16...;\n"
	  "                         default <f8) or name (float64, int32, uint8, bool,\n"
	  "                         complex128...: native byte order)\n"
	  "  -o, --order C|F        memory order (default C)\n"
	  "  -b, --block-size SIZE  a power of two >= 4 KiB, e.g. 64KiB, 2MiB\n"
	  "                         (default: the broker's)\n"
	  "  -v, --verbose          print the revision created\n" OPT_COMMON },
	{ "rm", cmd_rm, "[-f] NAME...", "delete arrays",
	  "Delete each NAME, each as a new revision.  Connections that still look at\n"
	  "an older revision keep seeing the array until they sync.\n"
	  "\n"
	  "  -f, --force        no error for a NAME that does not exist\n"
	  "  -v, --verbose      print the revisions created\n" OPT_COMMON },
	{ "import", cmd_import, "[--force] [--block-size SIZE] [--chunk SIZE] FILE.npy NAME",
	  "create an array from a .npy file",
	  "Create array NAME with the dtype, shape and order (C or Fortran) of a NumPy\n"
	  ".npy file (format 1.0, 2.0 or 3.0) and copy its data in.  FILE \"-\" reads\n"
	  "standard input.  The data is committed every --chunk bytes, so memory use\n"
	  "stays bounded whatever the file's size; the first commit creates the array,\n"
	  "so a file of one chunk appears whole at once, a larger one chunk by chunk.\n"
	  "On failure nothing is left: the array is deleted again.\n"
	  "Supported dtypes: |b1, i1-i8, u1-u8, f2, f4, f8, c8, c16, either byte order.\n"
	  "\n"
	  "  -f, --force            replace an existing array NAME\n"
	  "  -b, --block-size SIZE  block size of the new array (default: the broker's)\n"
	  "  -c, --chunk SIZE       commit every SIZE bytes (default 64MiB)\n"
	  "  -q, --quiet            no progress bar (shown on a terminal for large files)\n"
	  "  -v, --verbose          print what was imported\n" OPT_COMMON },
	{ "export", cmd_export, "[--npy-version 1|2|3] NAME[INDEX] FILE.npy",
	  "write an array (or part) to a .npy file",
	  "Write array NAME, or the part an INDEX selects (NumPy basic indexing, e.g.\n"
	  "'a[0:100, ::2]'), as a NumPy .npy file, at the broker's newest revision.\n"
	  "An F-order array is written with fortran_order True.  The file is written\n"
	  "under a temporary name and renamed when complete.  FILE \"-\" writes\n"
	  "standard output.\n"
	  "\n"
	  "  -n, --npy-version N  format version 1, 2 or 3 (default: 1.0 when the\n"
	  "                       header fits, as NumPy does)\n"
	  "  -q, --quiet          no progress bar (shown on a terminal for large files)\n"
	  "  -v, --verbose        print what was exported\n" OPT_COMMON },
	{ "ref", cmd_ref, "[--lease SECONDS] NAME[INDEX]", "print an ArrayRef",
	  "Print the ArrayRef (JSON, docs/PROTOCOL.md \"ArrayRef\") of array NAME or\n"
	  "of the part an INDEX selects, at the broker's newest revision.  Another\n"
	  "process opens it with shma_ref_open() and maps the same pages.\n"
	  "\n"
	  "  -l, --lease SECONDS  ask the broker to keep the revision that long\n"
	  "                       (at most 3600), so the ref stays openable after\n"
	  "                       newer commits\n" OPT_COMMON },
	{ "get", cmd_get, "[--all] [--json] NAME[INDEX]", "print values",
	  "Print the values of array NAME or of the part an INDEX selects, NumPy\n"
	  "style.  Over 1000 items are summarised with \"...\" unless --all.\n"
	  "\n"
	  "  -a, --all          print every item\n"
	  "  -j, --json         nested JSON lists (complex as [re, im]; NaN and\n"
	  "                     infinities as the strings \"nan\", \"inf\", \"-inf\");\n"
	  "                     over 1000 items only with --all\n" OPT_COMMON },
	{ "broker-status", cmd_broker_status, "[--json]", "show the broker's counters",
	  "Show the broker's state: pool use, revisions kept, arrays, clients, pins,\n"
	  "leases, commits and conflicts.\n"
	  "\n"
	  "  --json             the same as a JSON object\n" OPT_COMMON },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char exit_codes[] = "Exit status: 0 success; 1 the command failed (the broker refused, an I/O\n"
				 "error, a malformed file); 2 usage error; 3 the broker cannot be reached.\n";

static void main_help(FILE *out)
{
	fprintf(out, "Usage: shma [-S PATH] COMMAND [OPTIONS] [ARGS]\n"
		     "Manage the arrays of a shma broker.\n\n"
		     "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nOptions:\n" OPT_COMMON
		     "  -V, --version      print the version\n\n"
		     "'shma COMMAND --help' describes a command.  Array indexes are NumPy's:\n"
		     "'a[0:10, ::2]', 'a[..., 0]', 'a[-1]' (quote them for the shell).\n\n%s",
		exit_codes);
}

static int help_for(const char *name, FILE *out)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (name && !strcmp(name, commands[i].name)) {
			fprintf(out, "Usage: shma %s %s\n\n%s\n%s", commands[i].name,
				commands[i].synopsis, commands[i].help, exit_codes);
			return 0;
		}
	main_help(out);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "socket", required_argument, NULL, 'S' },
		{ "version", no_argument, NULL, 'V' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli cli = { 0 };
	int c, code;

	opterr = 0; /* usage_error() says it */
	cur_argv = argv;
	while ((c = getopt_long(argc, argv, "+:hS:Vvq", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			main_help(stdout);
			return EXIT_OK;
		case 'V':
			printf("shma %s\n", SHMA_VERSION);
			return EXIT_OK;
		case 'S':
			cli.socket_opt = optarg;
			break;
		case 'v':
			cli.verbose = true;
			break;
		case 'q':
			cli.quiet = true;
			break;
		case ':':
			return usage_error(&cli, "option %s needs an argument", argv_opt());
		default:
			return usage_error(&cli, "unknown option %s", argv_opt());
		}
	}
	if (optind >= argc) {
		main_help(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[optind], "help")) {
		if (optind + 1 < argc) {
			for (size_t i = 0; i < NCOMMANDS; i++)
				if (!strcmp(argv[optind + 1], commands[i].name))
					return help_for(commands[i].name, stdout);
			cli.cmd = NULL;
			return usage_error(&cli, "no command \"%s\"", argv[optind + 1]);
		}
		main_help(stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(argv[optind], commands[i].name))
			continue;
		cli.cmd = commands[i].name;
		argc -= optind;
		argv += optind;
		optind = 0; /* GNU getopt: start over on the command's arguments */
		cur_argv = argv;
		code = commands[i].run(&cli, argc, argv);
		shma_disconnect(&cli.conn);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "shma: %s: cannot write the output: %s\n", cli.cmd,
				strerror(errno));
			if (!code)
				code = EXIT_FAIL;
		}
		return code;
	}
	return usage_error(&cli, "no command \"%s\"", argv[optind]);
}
