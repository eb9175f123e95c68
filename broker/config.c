/* config.c - shma-broker configuration: parse, validate, resolve (see config.h).
 *
 * A configuration is the embedded default (config/broker.json) with the
 * user's document laid over it: a top-level member of the user's document
 * replaces the default's, except that the nested objects (socket, retention,
 * limits, access) are merged member by member.  So every key has exactly one
 * default, the one in config/broker.json.  The merged tree is then validated
 * in one pass, and the paths are resolved (runtime_dir, socket.path, publish,
 * data_dir).  Nothing outside the process is touched: no directory is
 * created, no file opened except the configuration file itself; the
 * environment (XDG_RUNTIME_DIR, XDG_STATE_HOME, HOME) is only read.
 *
 * jansson does not record where a value was.  When a value is rejected, a
 * small scanner over the user's text finds its key again by its path
 * (["limits", "clients"], ["access", "rw_uids", 2]) so that the error can say
 * file:line:column.  The scanner runs only on text jansson has accepted.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

/* A configuration file larger than this is surely not one. */
#define CONFIG_MAX_BYTES (1u << 20)
/* Longest path a UNIX socket address holds (sun_path without its NUL). */
#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
/* uid_t/gid_t (uint32_t)-1 means "no id" to chown(2) and friends. */
#define ID_MAX UINT32_C(4294967294)
/* Deepest key path of the schema is access.rw_uids[i]. */
#define PATH_MAX_DEPTH 4

struct path_part {
	const char *key; /* object member name (borrowed), or NULL: array element */
	size_t index;
};

/* State of one load; errors are located in the user's text. */
struct loader {
	const char *text; /* the user's document (jansson accepted it) */
	size_t len;
	const char *file;  /* its file name, or NULL: not from a file */
	json_t *user;	   /* its tree (borrowed) */
	struct config_error *err;
	struct path_part path[PATH_MAX_DEPTH]; /* key being validated */
	int depth;
};

/* Values before resolution, borrowed from the merged tree. */
struct raw {
	const char *runtime_dir; /* NULL: from the environment */
	const char *socket_path;
	const char *publish; /* NULL: ipc:// under runtime_dir */
	const char *data_dir; /* a path, or NULL: null (per user) or false */
	bool data_dir_memory; /* data_dir was false: memory only */
};

/* --- locating keys in the text -------------------------------------------- */

struct scan {
	const unsigned char *s;
	size_t len, pos;
};

static bool scan_is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void scan_ws(struct scan *sc)
{
	while (sc->pos < sc->len && scan_is_ws(sc->s[sc->pos]))
		sc->pos++;
}

static bool scan_hex4(struct scan *sc, unsigned int *out)
{
	unsigned int v = 0;
	int i, c;

	if (sc->len - sc->pos < 4)
		return false;
	for (i = 0; i < 4; i++) {
		c = sc->s[sc->pos++];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned int)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned int)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned int)(c - 'A' + 10);
		else
			return false;
	}
	*out = v;
	return true;
}

/* Decode the next character of a string (sc->pos is inside the quotes) as
 * UTF-8 into out[].  Returns its length in bytes, 0 at the closing quote
 * (consumed), or -1 on malformed text. */
static int scan_char(struct scan *sc, unsigned char out[4])
{
	unsigned int cp, lo;
	int c;

	if (sc->pos >= sc->len)
		return -1;
	c = sc->s[sc->pos++];
	if (c == '"')
		return 0;
	if (c != '\\') {
		out[0] = (unsigned char)c;
		return 1;
	}
	if (sc->pos >= sc->len)
		return -1;
	c = sc->s[sc->pos++];
	switch (c) {
	case '"': case '\\': case '/':
		out[0] = (unsigned char)c;
		return 1;
	case 'b': out[0] = '\b'; return 1;
	case 'f': out[0] = '\f'; return 1;
	case 'n': out[0] = '\n'; return 1;
	case 'r': out[0] = '\r'; return 1;
	case 't': out[0] = '\t'; return 1;
	case 'u':
		break;
	default:
		return -1;
	}
	if (!scan_hex4(sc, &cp))
		return -1;
	if (cp >= 0xd800 && cp <= 0xdbff) { /* high surrogate: a low one follows */
		if (sc->len - sc->pos < 6 || sc->s[sc->pos] != '\\' || sc->s[sc->pos + 1] != 'u')
			return -1;
		sc->pos += 2;
		if (!scan_hex4(sc, &lo) || lo < 0xdc00 || lo > 0xdfff)
			return -1;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Consume the string at sc->pos.  With match, tell whether it decodes to
 * exactly that; with buf, store its decoded value there (truncated, NUL
 * terminated).  Malformed text moves sc to its end. */
static bool scan_string(struct scan *sc, const char *match, char *buf, size_t cap)
{
	unsigned char ch[4];
	size_t m = 0, b = 0;
	bool equal = true;
	int n, i;

	if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
		goto malformed;
	sc->pos++;
	while ((n = scan_char(sc, ch)) > 0) {
		for (i = 0; i < n; i++) {
			if (match && (match[m] == '\0' || (unsigned char)match[m] != ch[i]))
				equal = false;
			else if (match)
				m++;
			if (buf && b + 1 < cap)
				buf[b++] = (char)ch[i];
		}
	}
	if (n < 0)
		goto malformed;
	if (buf && cap)
		buf[b] = '\0';
	return !match || (equal && match[m] == '\0');

malformed:
	sc->pos = sc->len;
	if (buf && cap)
		buf[0] = '\0';
	return false;
}

/* Consume the value at sc->pos (after white space). */
static void scan_skip_value(struct scan *sc)
{
	size_t depth = 0;
	unsigned char c;

	scan_ws(sc);
	if (sc->pos >= sc->len)
		return;
	c = sc->s[sc->pos];
	if (c == '"') {
		scan_string(sc, NULL, NULL, 0);
		return;
	}
	if (c != '{' && c != '[') {
		while (sc->pos < sc->len) {
			c = sc->s[sc->pos];
			if (scan_is_ws(c) || c == ',' || c == '}' || c == ']')
				break;
			sc->pos++;
		}
		return;
	}
	while (sc->pos < sc->len) {
		c = sc->s[sc->pos];
		if (c == '"') {
			scan_string(sc, NULL, NULL, 0);
			continue;
		}
		sc->pos++;
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			return;
	}
}

/* If the byte at sc->pos is c (after white space), consume it. */
static bool scan_take(struct scan *sc, unsigned char c)
{
	scan_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == c) {
		sc->pos++;
		return true;
	}
	return false;
}

/* In the value at sc->pos, find the member or element part names.  On
 * success *at is where its key (or the element) starts and sc is at its
 * value. */
static bool scan_find(struct scan *sc, const struct path_part *part, size_t *at)
{
	size_t i, key_at;
	bool found;

	if (part->key) {
		if (!scan_take(sc, '{') || scan_take(sc, '}'))
			return false;
		do {
			scan_ws(sc);
			key_at = sc->pos;
			found = scan_string(sc, part->key, NULL, 0);
			if (!scan_take(sc, ':'))
				return false;
			if (found) {
				*at = key_at;
				scan_ws(sc);
				return true;
			}
			scan_skip_value(sc);
		} while (scan_take(sc, ','));
		return false;
	}
	if (!scan_take(sc, '[') || scan_take(sc, ']'))
		return false;
	i = 0;
	do {
		scan_ws(sc);
		if (i++ == part->index) {
			*at = sc->pos;
			return true;
		}
		scan_skip_value(sc);
	} while (scan_take(sc, ','));
	return false;
}

/* 1-based line and column (in characters, as jansson counts) of byte at. */
static void text_line_col(const char *text, size_t at, int *line, int *column)
{
	size_t i;

	*line = 1;
	*column = 1;
	for (i = 0; i < at; i++) {
		if (text[i] == '\n') {
			++*line;
			*column = 1;
		} else if (((unsigned char)text[i] & 0xc0) != 0x80) {
			++*column;
		}
	}
}

/* Where the key path[0..depth) is in text (the start of the document for
 * depth 0): true and *line, *column set, or false if it is not there. */
static bool text_locate(const char *text, size_t len, const struct path_part *path, int depth,
			int *line, int *column)
{
	struct scan sc = { (const unsigned char *)text, len, 0 };
	size_t at;
	int i;

	scan_ws(&sc);
	at = sc.pos;
	for (i = 0; i < depth; i++)
		if (!scan_find(&sc, &path[i], &at))
			return false;
	text_line_col(text, at, line, column);
	return true;
}

/* Walk the value at sc->pos looking for the object key whose string ends at
 * byte end (where jansson reports a duplicate key).  key holds the dotted
 * path so far; on success it holds the key's and *at is where it starts. */
static bool scan_find_key_ending(struct scan *sc, size_t end, char *key, size_t cap,
				 size_t *at)
{
	size_t klen = strlen(key), key_at, i = 0;

	scan_ws(sc);
	if (scan_take(sc, '{')) {
		if (scan_take(sc, '}'))
			return false;
		do {
			scan_ws(sc);
			key_at = sc->pos;
			if (klen && klen + 1 < cap)
				key[klen] = '.';
			scan_string(sc, NULL, key + klen + !!klen,
				    cap > klen + 1 ? cap - klen - !!klen : 0);
			if (sc->pos == end) {
				*at = key_at;
				return true;
			}
			if (!scan_take(sc, ':'))
				return false;
			if (scan_find_key_ending(sc, end, key, cap, at))
				return true;
			key[klen] = '\0';
		} while (scan_take(sc, ','));
		scan_take(sc, '}');
		return false;
	}
	if (scan_take(sc, '[')) {
		if (scan_take(sc, ']'))
			return false;
		do {
			snprintf(key + klen, cap - klen, "[%zu]", i++);
			if (scan_find_key_ending(sc, end, key, cap, at))
				return true;
			key[klen] = '\0';
		} while (scan_take(sc, ','));
		scan_take(sc, ']');
		return false;
	}
	scan_skip_value(sc);
	return false;
}

/* --- errors ---------------------------------------------------------------- */

static void path_format(const struct path_part *path, int depth, char *buf, size_t cap)
{
	size_t off = 0;
	int i, n;

	buf[0] = '\0';
	for (i = 0; i < depth && off < cap; i++) {
		if (path[i].key)
			n = snprintf(buf + off, cap - off, "%s%s", i ? "." : "", path[i].key);
		else
			n = snprintf(buf + off, cap - off, "[%zu]", path[i].index);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

/* Reject the value at ld->path: fill ld->err and return -EINVAL. */
__attribute__((format(printf, 2, 0)))
static int vfail(struct loader *ld, const char *fmt, va_list ap)
{
	struct config_error *err = ld->err;

	path_format(ld->path, ld->depth, err->key, sizeof(err->key));
	if (!text_locate(ld->text, ld->len, ld->path, ld->depth, &err->line, &err->column))
		err->line = err->column = 0;
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	return -EINVAL;
}

__attribute__((format(printf, 2, 3)))
static int fail(struct loader *ld, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(ld, fmt, ap);
	va_end(ap);
	return rc;
}

static void enter(struct loader *ld, const char *key, size_t index)
{
	assert(ld->depth < PATH_MAX_DEPTH);
	ld->path[ld->depth].key = key;
	ld->path[ld->depth].index = index;
	ld->depth++;
}

static void leave(struct loader *ld)
{
	ld->depth--;
}

/* Reject the value of member key of the object at ld->path. */
__attribute__((format(printf, 3, 4)))
static int fail_member(struct loader *ld, const char *key, const char *fmt, ...)
{
	va_list ap;
	int rc;

	enter(ld, key, 0);
	va_start(ap, fmt);
	rc = vfail(ld, fmt, ap);
	va_end(ap);
	return rc;
}

static int fail_nomem(struct loader *ld)
{
	fail(ld, "out of memory");
	return -ENOMEM;
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	case JSON_NULL:
		return "null";
	}
	return "?";
}

/* "4 GiB" when exact, else "4097 bytes". */
static const char *size_str(uint64_t v, char buf[32])
{
	static const char *const units[] = { "TiB", "GiB", "MiB", "KiB" };
	int i;

	for (i = 0; i < 4 && v; i++) {
		uint64_t unit = TiB >> (10 * i);

		if (v % unit == 0) {
			snprintf(buf, 32, "%llu %s", (unsigned long long)(v / unit), units[i]);
			return buf;
		}
	}
	snprintf(buf, 32, "%llu bytes", (unsigned long long)v);
	return buf;
}

/* --- values ---------------------------------------------------------------- */

/* Look up the member key of obj (after merging, every key has a value) and
 * enter it.  The getters below work this way: they enter their key, and leave
 * it only once the value is accepted, so that on failure ld->path still names
 * it; a failure ends the whole load, so the path is never unwound. */
static int member(struct loader *ld, json_t *obj, const char *key, json_t **v)
{
	enter(ld, key, 0);
	*v = json_object_get(obj, key);
	if (!*v)
		return fail(ld, "no value (the embedded default lacks this key)");
	return 0;
}

/* Every member of obj (at ld->path) must be one of known. */
static int check_keys(struct loader *ld, json_t *obj, const char *const *known)
{
	char list[160];
	const char *key;
	size_t off = 0;
	json_t *v;
	int i;

	json_object_foreach(obj, key, v) {
		for (i = 0; known[i]; i++)
			if (!strcmp(known[i], key))
				break;
		if (known[i])
			continue;
		list[0] = '\0';
		for (i = 0; known[i] && off < sizeof(list); i++) {
			int n = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
					 known[i]);

			if (n < 0)
				break;
			off += (size_t)n;
		}
		return fail_member(ld, key, "unknown key (known here: %s)", list);
	}
	return 0;
}

/* Enter member key of obj, an object with only the known keys; *out is it.
 * The caller leaves it when done with its members. */
static int get_object(struct loader *ld, json_t *obj, const char *key, const char *const *known,
		      json_t **out)
{
	int err;

	err = member(ld, obj, key, out);
	if (err)
		return err;
	if (!json_is_object(*out))
		return fail(ld, "expected an object, got %s", json_kind(*out));
	return check_keys(ld, *out, known);
}

/* A string (borrowed from the tree), non-empty; or NULL for null if nullable. */
static int get_string(struct loader *ld, json_t *obj, const char *key, bool nullable,
		      const char **out)
{
	json_t *v;
	int err;

	err = member(ld, obj, key, &v);
	if (err)
		return err;
	if (nullable && json_is_null(v)) {
		*out = NULL;
	} else if (!json_is_string(v)) {
		return fail(ld, "expected a string%s, got %s", nullable ? " or null" : "",
			    json_kind(v));
	} else if (json_string_length(v) == 0) {
		return fail(ld, "must not be empty");
	} else {
		*out = json_string_value(v);
	}
	leave(ld);
	return 0;
}

static int get_uint(struct loader *ld, json_t *obj, const char *key, uint64_t min, uint64_t max,
		    uint64_t *out)
{
	json_int_t x;
	json_t *v;
	int err;

	err = member(ld, obj, key, &v);
	if (err)
		return err;
	if (!json_is_integer(v))
		return fail(ld, "expected an integer, got %s", json_kind(v));
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x < min || (uint64_t)x > max)
		return fail(ld, "%lld is out of range (%llu to %llu)", (long long)x,
			    (unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)x;
	leave(ld);
	return 0;
}

static int get_u32(struct loader *ld, json_t *obj, const char *key, uint32_t min, uint32_t max,
		   uint32_t *out)
{
	uint64_t x;
	int err;

	err = get_uint(ld, obj, key, min, max, &x);
	if (!err)
		*out = (uint32_t)x;
	return err;
}

/* "<digits>[ ]<unit>": 0, -EINVAL (not a size) or -ERANGE (overflow). */
static int parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *name;
		unsigned int shift;
	} units[] = {
		{ "", 0 },   { "B", 0 },    { "K", 10 },   { "KiB", 10 }, { "M", 20 },
		{ "MiB", 20 }, { "G", 30 }, { "GiB", 30 }, { "T", 40 },   { "TiB", 40 },
	};
	uint64_t v = 0;
	size_t i;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	while (*s == ' ')
		s++;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(s, units[i].name))
			break;
	if (i == sizeof(units) / sizeof(units[0]))
		return -EINVAL;
	if (v > UINT64_MAX >> units[i].shift)
		return -ERANGE;
	*out = v << units[i].shift;
	return 0;
}

/* A size in bytes: a non-negative integer or a string like "2MiB"; checked
 * against min..max. */
static int get_size(struct loader *ld, json_t *obj, const char *key, uint64_t min, uint64_t max,
		    uint64_t *out)
{
	char a[32], b[32], c[32];
	const char *s;
	json_t *v;
	int err;

	err = member(ld, obj, key, &v);
	if (err)
		return err;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return fail(ld, "a size must not be negative");
		*out = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		s = json_string_value(v);
		err = parse_size(s, out);
		if (err == -ERANGE)
			return fail(ld, "\"%s\" does not fit in 64 bits", s);
		if (err)
			return fail(ld, "\"%s\" is not a size (an integer with an optional unit "
				    "B, KiB, MiB, GiB or TiB)", s);
	} else {
		return fail(ld, "expected a size (an integer, or a string like \"2MiB\"), got %s",
			    json_kind(v));
	}
	if (*out < min || *out > max)
		return fail(ld, "%s is out of range (%s to %s)", size_str(*out, c),
			    size_str(min, a), size_str(max, b));
	leave(ld);
	return 0;
}

/* Look a user (or group) name up: 0, -ENOENT if there is none, or -errno. */
static int lookup_id(const char *name, bool group, uint32_t *id)
{
	long hint = sysconf(group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 1024;
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	char *buf = NULL, *nbuf;
	int rc;

	for (;;) {
		nbuf = realloc(buf, size);
		if (!nbuf) {
			rc = -ENOMEM;
			goto out_free_buf;
		}
		buf = nbuf;
		if (group)
			rc = getgrnam_r(name, &gr, buf, size, &grp);
		else
			rc = getpwnam_r(name, &pw, buf, size, &pwp);
		if (rc != ERANGE || size >= CONFIG_MAX_BYTES)
			break;
		size *= 2;
	}
	/* "not found" may also come back as one of these (getpwnam_r(3)) */
	if (rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM || (!rc && !grp && !pwp))
		rc = -ENOENT;
	else if (rc)
		rc = -rc;
	else
		*id = group ? (uint32_t)gr.gr_gid : (uint32_t)pw.pw_uid;
out_free_buf:
	free(buf);
	return rc;
}

/* A uid or gid (at ld->path): an integer, or a name to look up. */
static int parse_id(struct loader *ld, json_t *v, bool group, uint32_t *id)
{
	const char *what = group ? "group" : "user";
	json_int_t x;
	int rc;

	if (json_is_integer(v)) {
		x = json_integer_value(v);
		if (x < 0 || x > (json_int_t)ID_MAX)
			return fail(ld, "%lld is not a %s id (0 to %lu)", (long long)x, what,
				    (unsigned long)ID_MAX);
		*id = (uint32_t)x;
		return 0;
	}
	if (!json_is_string(v))
		return fail(ld, "expected a %s id (integer) or name (string), got %s", what,
			    json_kind(v));
	rc = lookup_id(json_string_value(v), group, id);
	if (rc == -ENOMEM)
		return fail_nomem(ld);
	if (rc == -ENOENT)
		return fail(ld, "no such %s \"%s\"", what, json_string_value(v));
	if (rc)
		return fail(ld, "cannot look %s \"%s\" up: %s", what, json_string_value(v),
			    strerror(-rc));
	return 0;
}

static int get_ids(struct loader *ld, json_t *obj, const char *key, bool group,
		   struct id_list *out)
{
	uint32_t *ids = NULL;
	size_t i, n;
	json_t *v, *e;
	int err;

	err = member(ld, obj, key, &v);
	if (err)
		goto out;
	if (!json_is_array(v)) {
		err = fail(ld, "expected an array of %s ids or names, got %s",
			   group ? "group" : "user", json_kind(v));
		goto out;
	}
	n = json_array_size(v);
	if (n) {
		ids = calloc(n, sizeof(*ids));
		if (!ids) {
			err = fail_nomem(ld);
			goto out;
		}
	}
	json_array_foreach(v, i, e) {
		enter(ld, NULL, i);
		err = parse_id(ld, e, group, &ids[i]);
		if (err)
			goto err_free_ids;
		leave(ld);
	}
	out->ids = ids;
	out->n = n;
	leave(ld);
	return 0;

err_free_ids:
	free(ids);
out:
	return err;
}

/* --- sections ------------------------------------------------------------- */

static int load_socket(struct loader *ld, json_t *root, struct broker_config *c, struct raw *raw)
{
	static const char *const keys[] = { "path", "mode", "group", NULL };
	unsigned int mode = 0;
	json_t *obj, *v;
	const char *s;
	uint32_t gid;
	int err;

	err = get_object(ld, root, "socket", keys, &obj);
	if (err)
		return err;
	err = get_string(ld, obj, "path", false, &raw->socket_path);
	if (err)
		return err;

	err = member(ld, obj, "mode", &v);
	if (err)
		return err;
	if (!json_is_string(v))
		return fail(ld, "expected a string of octal digits like \"0660\", got %s",
			    json_kind(v));
	s = json_string_value(v);
	if (!*s)
		return fail(ld, "\"\" is not an octal mode like \"0660\"");
	for (; *s; s++) {
		if (*s < '0' || *s > '7')
			return fail(ld, "\"%s\" is not an octal mode like \"0660\"",
				    json_string_value(v));
		mode = mode * 8 + (unsigned int)(*s - '0');
		if (mode > 0777)
			return fail(ld, "\"%s\" is out of range (at most 0777)",
				    json_string_value(v));
	}
	c->socket_mode = (mode_t)mode;
	leave(ld);

	err = member(ld, obj, "group", &v);
	if (err)
		return err;
	if (json_is_null(v)) {
		c->socket_gid = -1;
	} else {
		err = parse_id(ld, v, true, &gid);
		if (err)
			return err;
		c->socket_gid = gid;
	}
	leave(ld);
	leave(ld);
	return 0;
}

static int load_publish(struct loader *ld, json_t *root, struct raw *raw)
{
	static const char *const schemes[] = { "ipc://", "tcp://", "inproc://" };
	size_t i, n;
	int err;

	err = get_string(ld, root, "publish", true, &raw->publish);
	if (err || !raw->publish)
		return err;
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		n = strlen(schemes[i]);
		if (!strncmp(raw->publish, schemes[i], n) && raw->publish[n])
			return 0;
	}
	return fail_member(ld, "publish", "\"%s\" is not a ZeroMQ endpoint "
			   "(ipc://PATH, tcp://HOST:PORT or inproc://NAME)", raw->publish);
}

static int load_sizes(struct loader *ld, json_t *root, struct broker_config *c)
{
	char a[32], b[32];
	int err;

	err = get_size(ld, root, "pool_size", MiB, 16 * TiB, &c->pool_size);
	if (err)
		return err;
	if (c->pool_size % 4096)
		return fail_member(ld, "pool_size", "%llu bytes is not a multiple of 4 KiB",
				   (unsigned long long)c->pool_size);
	err = get_size(ld, root, "block_size", 4 * KiB, GiB, &c->block_size);
	if (err)
		return err;
	if (c->block_size & (c->block_size - 1))
		return fail_member(ld, "block_size", "%llu bytes is not a power of two",
				   (unsigned long long)c->block_size);
	if (c->block_size > c->pool_size) {
		/* blame the one the user wrote: the other came from the default */
		if (!json_object_get(ld->user, "block_size"))
			return fail_member(ld, "pool_size", "%s is smaller than block_size (%s)",
					   size_str(c->pool_size, a), size_str(c->block_size, b));
		return fail_member(ld, "block_size", "%s is larger than pool_size (%s)",
				   size_str(c->block_size, a), size_str(c->pool_size, b));
	}
	return 0;
}

static int load_retention(struct loader *ld, json_t *root, struct broker_config *c)
{
	static const char *const keys[] = { "revisions", "seconds", NULL };
	json_t *obj, *v;
	double s;
	int err;

	err = get_object(ld, root, "retention", keys, &obj);
	if (err)
		return err;
	err = get_uint(ld, obj, "revisions", 1, 1000000000, &c->keep_revisions);
	if (err)
		return err;
	err = member(ld, obj, "seconds", &v);
	if (err)
		return err;
	if (!json_is_number(v))
		return fail(ld, "expected a number of seconds, got %s", json_kind(v));
	s = json_number_value(v);
	if (!(s >= 0 && s <= 315360000))
		return fail(ld, "%g is out of range (0 to 315360000, ten years)", s);
	c->keep_ms = (uint64_t)(s * 1000.0 + 0.5);
	leave(ld);
	leave(ld);
	return 0;
}

static int load_limits(struct loader *ld, json_t *root, struct broker_config *c)
{
	static const char *const keys[] = { "clients", "message", "arrays", "commit_bytes", NULL };
	uint64_t message;
	json_t *obj;
	int err;

	err = get_object(ld, root, "limits", keys, &obj);
	if (!err)
		err = get_u32(ld, obj, "clients", 1, 65536, &c->max_clients);
	if (!err)
		err = get_size(ld, obj, "message", 4 * KiB, 16 * MiB, &message);
	if (!err)
		c->max_message = (uint32_t)message;
	if (!err)
		err = get_u32(ld, obj, "arrays", 1, 1000000, &c->max_arrays);
	if (!err)
		err = get_size(ld, obj, "commit_bytes", 4 * KiB, UINT64_MAX, &c->max_commit_bytes);
	if (!err)
		leave(ld);
	return err;
}

static int load_access(struct loader *ld, json_t *root, struct broker_config *c)
{
	static const char *const keys[] = { "rw_uids", "rw_gids", "ro_uids", "ro_gids", NULL };
	json_t *obj;
	int err;

	err = get_object(ld, root, "access", keys, &obj);
	if (!err)
		err = get_ids(ld, obj, "rw_uids", false, &c->rw_uids);
	if (!err)
		err = get_ids(ld, obj, "rw_gids", true, &c->rw_gids);
	if (!err)
		err = get_ids(ld, obj, "ro_uids", false, &c->ro_uids);
	if (!err)
		err = get_ids(ld, obj, "ro_gids", true, &c->ro_gids);
	if (!err)
		leave(ld);
	return err;
}

static int load_log_level(struct loader *ld, json_t *root, struct broker_config *c)
{
	static const char *const names[] = {
		[LOG_ERROR] = "error", [LOG_WARN] = "warn", [LOG_INFO] = "info",
		[LOG_DEBUG] = "debug",
	};
	const char *s;
	int err, i;

	err = get_string(ld, root, "log_level", false, &s);
	if (err)
		return err;
	for (i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
		if (!strcmp(s, names[i])) {
			c->log_level = (enum log_level)i;
			return 0;
		}
	}
	return fail_member(ld, "log_level",
			   "\"%s\" is not a log level (error, warn, info or debug)", s);
}

/* data_dir: a path, null (the per-user default, resolved later) or false
 * (memory only). */
static int load_data_dir(struct loader *ld, json_t *root, struct raw *raw)
{
	json_t *v;
	int err;

	err = member(ld, root, "data_dir", &v);
	if (err)
		return err;
	if (json_is_false(v)) {
		raw->data_dir_memory = true;
	} else if (json_is_string(v)) {
		if (json_string_length(v) == 0)
			return fail(ld, "must not be empty (false keeps data in memory only)");
		raw->data_dir = json_string_value(v);
	} else if (!json_is_null(v)) {
		return fail(ld, "expected a directory (string), null or false, got %s",
			    json_kind(v));
	}
	leave(ld);
	return 0;
}

static int load_store(struct loader *ld, json_t *root, struct broker_config *c)
{
	const char *s;
	int err;

	err = get_string(ld, root, "durability", false, &s);
	if (err)
		return err;
	if (strcmp(s, "sync") && strcmp(s, "async"))
		return fail_member(ld, "durability", "\"%s\" is not a durability (sync or async)",
				   s);
	c->durability_async = !strcmp(s, "async");
	return get_size(ld, root, "store_size", MiB, TiB, &c->store_size);
}

/* --- resolving paths ------------------------------------------------------ */

/* dir/name, without doubling a trailing slash of dir; NULL if out of memory. */
static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	char *out;

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (asprintf(&out, "%.*s%s%s", (int)n, dir, n && dir[n - 1] == '/' ? "" : "/", name) < 0)
		return NULL;
	return out;
}

/* The directory a relative data_dir is taken in (malloc'd): the config
 * file's, if it came from one, else the current one. */
static int base_dir(struct loader *ld, char **out)
{
	char *dir, *slash, *abs;
	int err = 0;

	if (!ld->file || !json_object_get(ld->user, "data_dir")) {
		*out = getcwd(NULL, 0);
		return *out ? 0 : -errno;
	}
	dir = strdup(ld->file);
	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	abs = realpath(dir, NULL);
	if (!abs)
		err = -errno;
	free(dir);
	*out = abs;
	return err;
}

static int resolve_runtime_dir(const struct raw *raw, char **out)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	size_t n;

	if (raw->runtime_dir)
		*out = strdup(raw->runtime_dir);
	else if (xdg && xdg[0] == '/') /* a relative one is invalid (XDG spec): ignore it */
		*out = path_join(xdg, "shma");
	else if (asprintf(out, "/tmp/shma-%lu", (unsigned long)geteuid()) < 0)
		*out = NULL;
	if (!*out)
		return -ENOMEM;
	n = strlen(*out);
	while (n > 1 && (*out)[n - 1] == '/')
		(*out)[--n] = '\0';
	return 0;
}

/* The per-user store directory data_dir null stands for (malloc'd): under
 * $XDG_STATE_HOME, else $HOME/.local/state; relative values are invalid (XDG
 * spec) and ignored.  -ENOENT if neither is usable. */
static int state_dir(char **out)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (xdg && xdg[0] == '/')
		*out = path_join(xdg, "shma");
	else if (home && home[0] == '/')
		*out = path_join(home, ".local/state/shma");
	else
		return -ENOENT;
	return *out ? 0 : -ENOMEM;
}

static int resolve(struct loader *ld, const struct raw *raw, struct broker_config *c)
{
	const char *ipc;
	char *base;
	int err;

	if (resolve_runtime_dir(raw, &c->runtime_dir))
		return fail_nomem(ld);

	if (raw->socket_path[0] == '/')
		c->socket_path = strdup(raw->socket_path);
	else
		c->socket_path = path_join(c->runtime_dir, raw->socket_path);
	if (!c->socket_path)
		return fail_nomem(ld);
	if (strlen(c->socket_path) > SUN_PATH_MAX) {
		enter(ld, "socket", 0);
		return fail_member(ld, "path", "\"%s\" is %zu bytes long, a socket path holds "
				   "at most %zu (shorten runtime_dir or socket.path)",
				   c->socket_path, strlen(c->socket_path), SUN_PATH_MAX);
	}

	if (raw->publish)
		c->publish = strdup(raw->publish);
	else if (asprintf(&c->publish, "ipc://%s/inval.ipc", c->runtime_dir) < 0)
		c->publish = NULL;
	if (!c->publish)
		return fail_nomem(ld);
	ipc = c->publish + strlen("ipc://");
	if (!strncmp(c->publish, "ipc://", strlen("ipc://")) && ipc[0] != '@' &&
	    strlen(ipc) > SUN_PATH_MAX)
		return fail_member(ld, "publish", "\"%s\": the path is %zu bytes long, an ipc "
				   "endpoint holds at most %zu", c->publish, strlen(ipc),
				   SUN_PATH_MAX);

	if (raw->data_dir_memory)
		return 0;
	if (!raw->data_dir) {
		err = state_dir(&c->data_dir);
		if (err == -ENOMEM)
			return fail_nomem(ld);
		if (err)
			return fail_member(ld, "data_dir", "null stands for $XDG_STATE_HOME/shma or "
					   "$HOME/.local/state/shma, but neither variable is an "
					   "absolute path: set data_dir to a directory (or to "
					   "false to keep data in memory only)");
		return 0;
	}
	if (raw->data_dir[0] == '/') {
		c->data_dir = strdup(raw->data_dir);
		return c->data_dir ? 0 : fail_nomem(ld);
	}
	err = base_dir(ld, &base);
	if (err == -ENOMEM)
		return fail_nomem(ld);
	if (err)
		return fail_member(ld, "data_dir", "cannot resolve \"%s\": %s", raw->data_dir,
				   strerror(-err));
	c->data_dir = path_join(base, raw->data_dir);
	free(base);
	return c->data_dir ? 0 : fail_nomem(ld);
}

/* Validate the merged tree into *c (partly filled on failure). */
static int apply(struct loader *ld, json_t *root, struct broker_config *c)
{
	static const char *const keys[] = {
		"runtime_dir", "socket", "publish", "pool_size", "block_size", "retention",
		"limits", "access", "log_level", "data_dir", "durability", "store_size", NULL,
	};
	struct raw raw = { 0 };
	int err;

	err = check_keys(ld, root, keys);
	if (err)
		goto out;
	err = get_string(ld, root, "runtime_dir", true, &raw.runtime_dir);
	if (err)
		goto out;
	if (raw.runtime_dir && raw.runtime_dir[0] != '/') {
		err = fail_member(ld, "runtime_dir", "\"%s\" is not an absolute path",
				  raw.runtime_dir);
		goto out;
	}
	err = load_socket(ld, root, c, &raw);
	if (err)
		goto out;
	err = load_publish(ld, root, &raw);
	if (err)
		goto out;
	err = load_sizes(ld, root, c);
	if (err)
		goto out;
	err = load_retention(ld, root, c);
	if (err)
		goto out;
	err = load_limits(ld, root, c);
	if (err)
		goto out;
	err = load_access(ld, root, c);
	if (err)
		goto out;
	err = load_log_level(ld, root, c);
	if (err)
		goto out;
	err = load_data_dir(ld, root, &raw);
	if (err)
		goto out;
	err = load_store(ld, root, c);
	if (err)
		goto out;
	err = resolve(ld, &raw, c);
out:
	return err;
}

/* --- loading --------------------------------------------------------------- */

/* Turn jansson's error into *err: syntax errors keep its line and column; a
 * duplicate key is reported where the key starts, with its path. */
static int json_fail(struct config_error *err, const char *source, const char *text, size_t len,
		     const json_error_t *jerr)
{
	struct scan sc = { (const unsigned char *)text, len, 0 };
	size_t at;

	snprintf(err->source, sizeof(err->source), "%s", source);
	err->line = jerr->line > 0 ? jerr->line : 0;
	err->column = jerr->column > 0 ? jerr->column : 0;
	err->key[0] = '\0';
	/* jansson leaves the text empty when an allocation fails mid-parse */
	if (!jerr->text[0] || json_error_code(jerr) == json_error_out_of_memory) {
		snprintf(err->text, sizeof(err->text), "out of memory");
		return -ENOMEM;
	}
	if (json_error_code(jerr) == json_error_duplicate_key && jerr->position > 0 &&
	    scan_find_key_ending(&sc, (size_t)jerr->position, err->key, sizeof(err->key), &at)) {
		text_line_col(text, at, &err->line, &err->column);
		snprintf(err->text, sizeof(err->text), "duplicate key");
		return -EINVAL;
	}
	err->key[0] = '\0';
	snprintf(err->text, sizeof(err->text), "%s", jerr->text);
	return -EINVAL;
}

/* The default with user laid over it (a new tree), or NULL if out of memory. */
static json_t *merge(json_t *def, json_t *user)
{
	json_t *out, *dv, *uv;
	const char *key;

	out = json_deep_copy(def);
	if (!out)
		return NULL;
	json_object_foreach(user, key, uv) {
		dv = json_object_get(out, key);
		if (json_is_object(dv) && json_is_object(uv)) {
			if (json_object_update(dv, uv))
				goto err_put_out;
		} else if (json_object_set(out, key, uv)) {
			goto err_put_out;
		}
	}
	return out;

err_put_out:
	json_decref(out);
	return NULL;
}

static int load(const char *text, size_t len, const char *source, const char *file,
		struct broker_config *cfg, struct config_error *err)
{
	struct loader ld = { .text = text, .len = len, .file = file, .err = err };
	struct broker_config c = { 0 };
	json_t *def, *user, *merged;
	json_error_t jerr;
	int rc;

	memset(err, 0, sizeof(*err));
	snprintf(err->source, sizeof(err->source), "%s", source);
	memset(&jerr, 0, sizeof(jerr)); /* jansson may leave its code unset */
	def = json_loadb(config_default_json, strlen(config_default_json),
			 JSON_REJECT_DUPLICATES, &jerr);
	if (!def) {
		rc = json_fail(err, "<default>", config_default_json,
			       strlen(config_default_json), &jerr);
		goto out;
	}
	memset(&jerr, 0, sizeof(jerr));
	user = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!user) {
		rc = json_fail(err, source, text, len, &jerr);
		goto err_put_def;
	}
	ld.user = user;
	if (!json_is_object(user)) {
		rc = fail(&ld, "expected an object at the top level, got %s", json_kind(user));
		goto err_put_user;
	}
	merged = merge(def, user);
	if (!merged) {
		rc = fail_nomem(&ld);
		goto err_put_user;
	}
	rc = apply(&ld, merged, &c);
	json_decref(merged);
	if (rc)
		config_free(&c);
	else
		*cfg = c;
err_put_user:
	json_decref(user);
err_put_def:
	json_decref(def);
out:
	return rc;
}

int config_load_text(const char *text, size_t len, const char *source,
		     struct broker_config *cfg, struct config_error *err)
{
	return load(text, len, source ? source : "<text>", NULL, cfg, err);
}

/* Read a whole file (any kind: a pipe from -c <(...) too) into *out. */
static int read_file(const char *path, char **out, size_t *outlen)
{
	size_t len = 0, cap = 4096;
	char *buf, *nbuf;
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	buf = malloc(cap);
	if (!buf) {
		err = -ENOMEM;
		goto err_close_fd;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CONFIG_MAX_BYTES) {
				err = -EFBIG;
				goto err_free_buf;
			}
			cap *= 2;
			nbuf = realloc(buf, cap);
			if (!nbuf) {
				err = -ENOMEM;
				goto err_free_buf;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto err_free_buf;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return 0;

err_free_buf:
	free(buf);
err_close_fd:
	close(fd);
out:
	return err;
}

int config_load_file(const char *path, struct broker_config *cfg, struct config_error *err)
{
	size_t len = 0;
	char *text = NULL;
	int rc;

	rc = read_file(path, &text, &len);
	if (rc) {
		memset(err, 0, sizeof(*err));
		snprintf(err->source, sizeof(err->source), "%s", path);
		snprintf(err->text, sizeof(err->text), "%s",
			 rc == -EFBIG ? "file too large for a configuration (over 1 MiB)" :
					strerror(-rc));
		return rc;
	}
	rc = load(text, len, path, path, cfg, err);
	free(text);
	return rc;
}

void config_free(struct broker_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->runtime_dir);
	free(cfg->socket_path);
	free(cfg->publish);
	free(cfg->rw_uids.ids);
	free(cfg->rw_gids.ids);
	free(cfg->ro_uids.ids);
	free(cfg->ro_gids.ids);
	free(cfg->data_dir);
	memset(cfg, 0, sizeof(*cfg));
}

void config_error_format(const struct config_error *err, char *buf, size_t len)
{
	char where[300];
	int n;

	if (!len)
		return;
	if (err->line > 0 && err->column > 0)
		n = snprintf(where, sizeof(where), "%s:%d:%d", err->source, err->line,
			     err->column);
	else if (err->line > 0)
		n = snprintf(where, sizeof(where), "%s:%d", err->source, err->line);
	else
		n = snprintf(where, sizeof(where), "%s", err->source);
	if (n < 0)
		where[0] = '\0';
	n = snprintf(buf, len, "%s%s%s%s%s", where, where[0] ? ": " : "", err->key,
		     err->key[0] ? ": " : "", err->text);
	if (n < 0)
		buf[0] = '\0';
}

static bool id_in(const struct id_list *list, uint32_t id)
{
	size_t i;

	for (i = 0; i < list->n; i++)
		if (list->ids[i] == id)
			return true;
	return false;
}

enum access config_access(const struct broker_config *cfg, uid_t uid, const gid_t *gids,
			  size_t ngids, uid_t broker_uid)
{
	size_t i;

	if (uid == broker_uid || id_in(&cfg->rw_uids, uid))
		return ACCESS_RW;
	for (i = 0; i < ngids; i++)
		if (id_in(&cfg->rw_gids, gids[i]))
			return ACCESS_RW;
	if (id_in(&cfg->ro_uids, uid))
		return ACCESS_RO;
	for (i = 0; i < ngids; i++)
		if (id_in(&cfg->ro_gids, gids[i]))
			return ACCESS_RO;
	return ACCESS_NONE;
}
