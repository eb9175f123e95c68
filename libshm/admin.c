/* admin.c - the catalog and the broker's counters, without opening arrays
 * (the "administration" part of shma.h; requests list, stat and stats of
 * docs/PROTOCOL.md).
 */
#include "conn_int.h"
#include "dtype.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* An integer field >= 0, or -1 if absent or of another type. */
static int64_t field_u(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v)
								: -1;
}

/* A meta object (§5.2) into *st; -EPROTO if the broker's word is malformed. */
static int meta_take(json_t *meta, struct shma_array_stat *st)
{
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *dts = json_string_value(json_object_get(meta, "dtype"));
	const char *order = json_string_value(json_object_get(meta, "order"));
	json_t *shape = json_object_get(meta, "shape"), *d;
	int64_t id = field_u(meta, "id"), bs = field_u(meta, "block_size");
	int64_t nbytes = field_u(meta, "nbytes"), created = field_u(meta, "created");
	struct dtype dt;
	const char *why;
	size_t i;

	memset(st, 0, sizeof(*st));
	if (!name || strlen(name) > CONN_NAME_MAX || !dts || dtype_parse(dts, &dt, &why) ||
	    !order || (strcmp(order, "C") && strcmp(order, "F")) || id < 0 || bs <= 0 ||
	    nbytes < 0 || created < 0 || !json_is_array(shape) ||
	    json_array_size(shape) > SHMA_MAXDIM)
		return -EPROTO;
	strcpy(st->name, name);
	memcpy(st->dtype, dt.str, sizeof(st->dtype));
	st->order = order[0];
	st->id = (uint64_t)id;
	st->block_size = (size_t)bs;
	st->nbytes = (uint64_t)nbytes;
	st->nblocks = (st->nbytes + st->block_size - 1) / st->block_size;
	st->created = (uint64_t)created;
	st->ndim = (unsigned)json_array_size(shape);
	json_array_foreach(shape, i, d) {
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return -EPROTO;
		st->shape[i] = (uint64_t)json_integer_value(d);
	}
	st->blocks_stored = SHMA_UNKNOWN;
	return 0;
}

int shma_list(shma_conn *c, struct shma_array_stat **out, size_t *n, uint64_t *rev)
{
	struct shma_array_stat *v = NULL;
	json_t *r, *arrs, *m;
	size_t i;
	int err;

	*out = NULL;
	*n = 0;
	err = conn_enter(c);
	if (err)
		return err;
	err = conn_call(c, json_pack("{s:s}", "op", "list"), NULL, 0, &r, NULL, NULL);
	if (err)
		return conn_leave(c, err);
	arrs = json_object_get(r, "arrays");
	if (!json_is_array(arrs) || field_u(r, "revision") < 0) {
		err = conn_error(c, SHMA_EPROTOCOL, "the broker's list reply is malformed");
		goto out;
	}
	if (json_array_size(arrs)) {
		v = calloc(json_array_size(arrs), sizeof(*v));
		if (!v) {
			err = conn_error(c, -ENOMEM, "out of memory");
			goto out;
		}
	}
	json_array_foreach(arrs, i, m) {
		if (meta_take(m, &v[i])) {
			err = conn_error(c, SHMA_EPROTOCOL, "the broker described an array badly");
			free(v);
			goto out;
		}
	}
	*out = v;
	*n = json_array_size(arrs);
	if (rev)
		*rev = (uint64_t)field_u(r, "revision");
out:
	json_decref(r);
	return conn_leave(c, err);
}

int shma_stat(shma_conn *c, const char *name, struct shma_array_stat *out, uint64_t *rev)
{
	struct shma_array_stat st;
	json_t *r, *meta;
	int err;

	if (!name)
		return -EINVAL;
	err = conn_enter(c);
	if (err)
		return err;
	err = conn_call(c, json_pack("{s:s,s:s}", "op", "stat", "name", name), NULL, 0, &r, NULL,
			NULL);
	if (err)
		return conn_leave(c, err);
	meta = json_object_get(r, "meta");
	if (meta_take(meta, &st) || field_u(meta, "blocks_stored") < 0 ||
	    field_u(r, "revision") < 0) {
		err = conn_error(c, SHMA_EPROTOCOL, "the broker's stat reply is malformed");
	} else {
		st.blocks_stored = (uint64_t)field_u(meta, "blocks_stored");
		*out = st;
		if (rev)
			*rev = (uint64_t)field_u(r, "revision");
	}
	json_decref(r);
	return conn_leave(c, err);
}

int conn_broker_stats(struct shma_conn *c, struct shma_broker_stats *out)
{
	static const struct {
		const char *key;
		size_t off;
	} fields[] = {
#define F(x) { #x, offsetof(struct shma_broker_stats, x) }
		F(pool_size), F(pool_used), F(slots),	     F(head),	    F(oldest_kept),
		F(revisions_kept), F(pins), F(arrays),	     F(incarnations), F(versions),
		F(clients),	F(commits), F(conflicts), F(uptime_ms),	    F(leases),
#undef F
	};
	struct shma_broker_stats st = { 0 };
	json_t *r, *o;
	int err = conn_call(c, json_pack("{s:s}", "op", "stats"), NULL, 0, &r, NULL, NULL);

	if (err)
		return err;
	o = json_object_get(r, "stats");
	if (!json_is_object(o)) {
		err = conn_error(c, SHMA_EPROTOCOL, "the broker's stats reply is malformed");
	} else {
		for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
			int64_t v = field_u(o, fields[i].key);

			if (v > 0)
				*(uint64_t *)((char *)&st + fields[i].off) = (uint64_t)v;
		}
		*out = st;
	}
	json_decref(r);
	return err;
}

int shma_broker_stats(shma_conn *c, struct shma_broker_stats *out)
{
	int err = conn_enter(c);

	if (err)
		return err;
	return conn_leave(c, conn_broker_stats(c, out));
}
