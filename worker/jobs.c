/* jobs.c - job and result messages of shma-worker (see jobs.h). */
#include "jobs.h"
#include "why.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-' || c == '/';
}

static bool number_ok(const json_t *v, double *out)
{
	if (!json_is_number(v))
		return false;
	*out = json_number_value(v);
	return true;
}

/* The fields each op takes besides id, op and refs. */
static bool op_takes(enum ops_op op, const char *key)
{
	if (!strcmp(key, "axis"))
		return ops_is_reduction(op);
	if (!strcmp(key, "ddof"))
		return op == OPS_STD;
	if (!strcmp(key, "bins") || !strcmp(key, "range"))
		return op == OPS_HISTOGRAM;
	if (!strcmp(key, "factor"))
		return op == OPS_SCALE;
	if (!strcmp(key, "out"))
		return ops_is_reduction(op) || op == OPS_SCALE || op == OPS_ADD;
	return false;
}

int job_parse(const char *text, size_t len, struct job *job, char *why, size_t whylen)
{
	static const char *const known[] = { "id",   "op",    "refs",   "axis", "ddof",
					     "bins", "range", "factor", "out" };
	json_error_t jerr;
	json_t *o, *v, *refs;
	const char *key, *s;
	size_t i;
	int err = -EINVAL;

	memset(job, 0, sizeof(*job));
	job->bins = 10;
	if (len > JOB_MAX_BYTES)
		return why_invalid(why, whylen, "the job is %zu bytes long, more than %u", len, JOB_MAX_BYTES);
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		return why_invalid(why, whylen, "the job is not JSON: %s (line %d, column %d)", jerr.text,
			   jerr.line, jerr.column);
	if (!json_is_object(o)) {
		why_invalid(why, whylen, "a job is a JSON object");
		goto out;
	}
	if ((v = json_object_get(o, "id")))
		job->id = json_incref(v);
	json_object_foreach(o, key, v) {
		for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (!strcmp(key, known[i]))
				break;
		if (i == sizeof(known) / sizeof(known[0])) {
			why_invalid(why, whylen, "unknown field \"%.40s\" (known: id, op, refs, axis, ddof, "
			    "bins, range, factor, out)", key);
			goto out;
		}
	}
	s = json_string_value(json_object_get(o, "op"));
	if (!s) {
		why_invalid(why, whylen, "\"op\" (a string) is missing");
		goto out;
	}
	if (ops_lookup(s, &job->op)) {
		why_invalid(why, whylen, "unknown op \"%.40s\" (known: sum, mean, min, max, std, histogram, "
		    "scale, add, dot)", s);
		goto out;
	}
	json_object_foreach(o, key, v) {
		if (strcmp(key, "id") && strcmp(key, "op") && strcmp(key, "refs") &&
		    !op_takes(job->op, key)) {
			why_invalid(why, whylen, "%s takes no \"%s\"", s, key);
			goto out;
		}
	}
	refs = json_object_get(o, "refs");
	if (!json_is_array(refs) || json_array_size(refs) != ops_ninputs(job->op)) {
		why_invalid(why, whylen, "%s takes \"refs\": an array of %u ArrayRef%s", s,
		    ops_ninputs(job->op), ops_ninputs(job->op) > 1 ? "s" : "");
		goto out;
	}
	json_array_foreach(refs, i, v) {
		char reason[256], *t;
		int e;

		if (!json_is_object(v)) {
			why_invalid(why, whylen, "refs[%zu]: an ArrayRef is a JSON object", i);
			goto out;
		}
		t = json_dumps(v, JSON_COMPACT);
		if (!t) {
			why_invalid(why, whylen, "out of memory");
			err = -ENOMEM;
			goto out;
		}
		e = shma_ref_decode(t, strlen(t), &job->refs[i], reason, sizeof(reason));
		free(t);
		if (e) {
			why_invalid(why, whylen, "refs[%zu]: %s", i, reason);
			goto out;
		}
	}
	job->nrefs = (unsigned)json_array_size(refs);
	if ((v = json_object_get(o, "axis"))) {
		if (!json_is_integer(v) || json_integer_value(v) < -SHMA_MAXDIM ||
		    json_integer_value(v) >= SHMA_MAXDIM) {
			why_invalid(why, whylen, "\"axis\" must be an integer from %d to %d", -SHMA_MAXDIM,
			    SHMA_MAXDIM - 1);
			goto out;
		}
		job->has_axis = true;
		job->axis = json_integer_value(v);
	}
	if ((v = json_object_get(o, "ddof"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 1000000) {
			why_invalid(why, whylen, "\"ddof\" must be an integer from 0 to 1000000");
			goto out;
		}
		job->ddof = (unsigned)json_integer_value(v);
	}
	if ((v = json_object_get(o, "bins"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > OPS_MAX_BINS) {
			why_invalid(why, whylen, "\"bins\" must be an integer from 1 to %d", OPS_MAX_BINS);
			goto out;
		}
		job->bins = (size_t)json_integer_value(v);
	}
	if ((v = json_object_get(o, "range"))) {
		if (!json_is_array(v) || json_array_size(v) != 2 ||
		    !number_ok(json_array_get(v, 0), &job->range[0]) ||
		    !number_ok(json_array_get(v, 1), &job->range[1]) ||
		    !isfinite(job->range[0]) || !isfinite(job->range[1]) ||
		    job->range[0] > job->range[1]) {
			why_invalid(why, whylen, "\"range\" must be [lo, hi], two numbers with lo <= hi");
			goto out;
		}
		job->has_range = true;
	}
	if (job->op == OPS_SCALE) {
		if (!number_ok(json_object_get(o, "factor"), &job->factor)) {
			why_invalid(why, whylen, "scale takes \"factor\", a number");
			goto out;
		}
	}
	if ((v = json_object_get(o, "out"))) {
		s = json_string_value(v);
		if (!s || !*s || strlen(s) > JOB_NAME_MAX) {
			why_invalid(why, whylen, "\"out\" must be an array name of 1 to %d characters",
			    JOB_NAME_MAX);
			goto out;
		}
		for (const char *c = s; *c; c++)
			if (!name_char(*c)) {
				why_invalid(why, whylen, "\"out\": array names are made of A-Z a-z 0-9 . _ - /");
				goto out;
			}
		strcpy(job->out, s);
		if (ops_is_reduction(job->op) && !job->has_axis) {
			why_invalid(why, whylen, "\"out\" is for array results: a reduction over the whole "
			    "array is a number (give \"axis\")");
			goto out;
		}
	}
	err = 0;
out:
	json_decref(o);
	return err;
}

void job_clear(struct job *job)
{
	json_decref(job->id);
	job->id = NULL;
}

json_t *job_ref_json(const struct shma_ref *r)
{
	json_t *o;
	char *t;
	size_t len;

	if (shma_ref_encode(r, &t, &len))
		return NULL;
	o = json_loadb(t, len, 0, NULL);
	free(t);
	return o;
}

json_t *job_build(const char *op, json_t *id, const struct shma_ref *refs, unsigned nrefs)
{
	json_t *o = json_object(), *a = json_array();

	if (!o || !a)
		goto fail;
	if (id)
		json_object_set_new(o, "id", id);
	id = NULL;
	json_object_set_new(o, "op", json_string(op));
	for (unsigned i = 0; i < nrefs; i++) {
		json_t *r = job_ref_json(&refs[i]);

		if (!r)
			goto fail;
		json_array_append_new(a, r);
	}
	json_object_set_new(o, "refs", a);
	return o;
fail:
	json_decref(id);
	json_decref(a);
	json_decref(o);
	return NULL;
}

json_t *job_number(double v)
{
	if (isnan(v))
		return json_string("NaN");
	if (isinf(v))
		return json_string(v > 0 ? "Infinity" : "-Infinity");
	return json_real(v);
}

double job_number_value(const json_t *v)
{
	const char *s = json_string_value(v);

	if (json_is_number(v))
		return json_number_value(v);
	if (s && !strcmp(s, "Infinity"))
		return INFINITY;
	if (s && !strcmp(s, "-Infinity"))
		return -INFINITY;
	return NAN;
}

json_t *job_result_ok(const json_t *id, enum ops_op op)
{
	return json_pack("{s:O,s:b,s:s,s:I}", "id", id ? (json_t *)id : json_null(), "ok", 1, "op",
			 ops_name(op), "worker", (json_int_t)getpid());
}

json_t *job_result_error(const json_t *id, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:O,s:b,s:s,s:I}", "id", id ? (json_t *)id : json_null(), "ok", 0,
			 "error", msg, "worker", (json_int_t)getpid());
}

int job_result_parse(const char *text, size_t len, struct job_result *r, char *why,
		     size_t whylen)
{
	json_error_t jerr;
	json_t *o, *v;

	memset(r, 0, sizeof(*r));
	r->error = "";
	o = json_loadb(text, len, 0, &jerr);
	if (!o)
		return why_invalid(why, whylen, "the result is not JSON: %s", jerr.text);
	if (!json_is_object(o) || !json_is_boolean(json_object_get(o, "ok"))) {
		json_decref(o);
		return why_invalid(why, whylen, "a result is a JSON object with \"ok\"");
	}
	r->root = o;
	r->id = json_object_get(o, "id");
	if (!r->id)
		r->id = json_null();
	r->ok = json_is_true(json_object_get(o, "ok"));
	if (!r->ok) {
		r->error = json_string_value(json_object_get(o, "error"));
		if (!r->error)
			r->error = "(no message)";
	}
	r->value = json_object_get(o, "value");
	if ((v = json_object_get(o, "ref"))) {
		char reason[256], *t = json_dumps(v, JSON_COMPACT);
		int err = t ? shma_ref_decode(t, strlen(t), &r->ref, reason, sizeof(reason)) : -ENOMEM;

		free(t);
		if (err) {
			job_result_clear(r);
			return why_invalid(why, whylen, "the result's ref: %s", err == -ENOMEM ? "out of memory"
									    : reason);
		}
		r->has_ref = true;
	}
	if (json_is_integer(json_object_get(o, "elements")))
		r->elements = (uint64_t)json_integer_value(json_object_get(o, "elements"));
	r->seconds = job_number_value(json_object_get(o, "seconds"));
	if (json_is_integer(json_object_get(o, "worker")))
		r->worker = json_integer_value(json_object_get(o, "worker"));
	return 0;
}

void job_result_clear(struct job_result *r)
{
	json_decref(r->root);
	memset(r, 0, sizeof(*r));
	r->error = "";
}

/* ---- framing ----------------------------------------------------------------------- */

int job_send(void *zsock, const char *type, const char *body, size_t len, int flags)
{
	if (type && zmq_send(zsock, type, strlen(type), flags | ZMQ_SNDMORE) < 0)
		return -zmq_errno();
	if (zmq_send(zsock, body, len, flags) < 0)
		return -zmq_errno();
	return 0;
}

static bool more_frames(void *zsock)
{
	int more = 0;
	size_t ml = sizeof(more);

	return zmq_getsockopt(zsock, ZMQ_RCVMORE, &more, &ml) == 0 && more;
}

static void drain(void *zsock)
{
	while (more_frames(zsock)) {
		zmq_msg_t m;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, zsock, 0) < 0) {
			zmq_msg_close(&m);
			return;
		}
		zmq_msg_close(&m);
	}
}

int job_recv(void *zsock, int flags, char **body, size_t *len, char *type, size_t typelen)
{
	zmq_msg_t f1, f2;
	zmq_msg_t *b = &f1;
	int err = 0;

	if (typelen)
		type[0] = 0;
	zmq_msg_init(&f1);
	zmq_msg_init(&f2);
	if (zmq_msg_recv(&f1, zsock, flags) < 0) {
		err = -zmq_errno();
		goto out;
	}
	if (more_frames(zsock)) {
		if (zmq_msg_recv(&f2, zsock, 0) < 0) {
			err = -zmq_errno();
			goto out;
		}
		if (more_frames(zsock)) {
			drain(zsock);
			err = -EPROTO;
			goto out;
		}
		b = &f2;
		if (typelen) {
			size_t n = zmq_msg_size(&f1) < typelen - 1 ? zmq_msg_size(&f1) : typelen - 1;

			memcpy(type, zmq_msg_data(&f1), n);
			type[n] = 0;
		}
	}
	if (zmq_msg_size(b) > JOB_MAX_BYTES) {
		err = -EPROTO;
		goto out;
	}
	*body = malloc(zmq_msg_size(b) + 1);
	if (!*body) {
		err = -ENOMEM;
		goto out;
	}
	memcpy(*body, zmq_msg_data(b), zmq_msg_size(b));
	(*body)[zmq_msg_size(b)] = 0;
	*len = zmq_msg_size(b);
out:
	zmq_msg_close(&f1);
	zmq_msg_close(&f2);
	return err;
}
