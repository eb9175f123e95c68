/* jobs.h - the job and result messages of shma-worker (docs/WORKER.md).
 *
 * A job is one JSON object, sent as one ZeroMQ frame, or as two frames of
 * which the first is the type "shma.job/1":
 *
 *   {"id": any, "op": "sum", "refs": [ArrayRef, ...], "axis": 0, "ddof": 0,
 *    "bins": 10, "range": [lo, hi], "factor": 2.5, "out": "array/name"}
 *
 * A result is one JSON object, framed as the job was (typed results carry
 * "shma.result/1"):
 *
 *   {"id": ..., "ok": true, "op": "sum", "value": 12.5, "elements": 100,
 *    "seconds": 0.001, "worker": 1234}          (+ "ref", "shape", "edges", "mean")
 *   {"id": ..., "ok": false, "error": "refs[0]: ...", "worker": 1234}
 *
 * Non-finite numbers travel as the strings "NaN", "Infinity", "-Infinity"
 * (JSON has no literal for them).
 *
 * This module is the codec (parse, build) and the framing over ZeroMQ; it
 * does not run jobs.  Used by shma-worker, and by producers of jobs (the
 * demo, the tests).
 */
#ifndef SHMA_WORKER_JOBS_H
#define SHMA_WORKER_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "shma.h"

#define JOB_TYPE "shma.job/1"
#define JOB_RESULT_TYPE "shma.result/1"
#define JOB_MAX_BYTES (1u << 20) /* a job is refs and a few numbers */
#define JOB_MAX_REFS 2
#define JOB_NAME_MAX 200

struct job {
	json_t *id; /* owned; NULL when the job had none (results say null) */
	enum ops_op op;
	unsigned nrefs;
	struct shma_ref refs[JOB_MAX_REFS];
	bool has_axis;
	int64_t axis; /* may be negative: counted from the last axis */
	unsigned ddof;
	size_t bins;
	bool has_range;
	double range[2];
	double factor;
	char out[JOB_NAME_MAX + 1]; /* "" if not given */
};

/* Parse and check a job: unknown or duplicate fields, a missing or unknown
 * op, the wrong number of refs, a ref shma_ref_decode refuses, a field the
 * op does not take.  -EINVAL with a reason in why.  Whatever the outcome,
 * job->id is set when the text is an object with an "id" (so an error reply
 * can carry it), and job_clear() must be called. */
int job_parse(const char *text, size_t len, struct job *job, char *why, size_t whylen);
void job_clear(struct job *job);

/* For producers: a new job object {"id": id, "op": op, "refs": [...]}; id is
 * stolen (may be NULL: no id).  Add other fields with json_object_set_new.
 * Returns an owned object, or NULL (out of memory, bad ref). */
json_t *job_build(const char *op, json_t *id, const struct shma_ref *refs, unsigned nrefs);
/* A ref as a JSON object (owned), or NULL. */
json_t *job_ref_json(const struct shma_ref *r);

/* A number as JSON: a real, or the strings "NaN", "Infinity", "-Infinity".
 * New reference. */
json_t *job_number(double v);
/* The value of such a number (or of an integer); NaN for anything else. */
double job_number_value(const json_t *v);

/* Result objects (owned).  id is borrowed (NULL: null). */
json_t *job_result_ok(const json_t *id, enum ops_op op);
json_t *job_result_error(const json_t *id, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A parsed result (for producers). */
struct job_result {
	json_t *root;	   /* owned: the whole result */
	const json_t *id;  /* borrowed from root (a JSON null if absent) */
	bool ok;
	const char *error; /* borrowed; "" when ok */
	const json_t *value; /* borrowed, may be NULL */
	bool has_ref;
	struct shma_ref ref;
	uint64_t elements;
	double seconds;
	int64_t worker; /* pid of the worker, 0 if not given */
};
/* Parse a result; -EINVAL with why if it is not one. */
int job_result_parse(const char *text, size_t len, struct job_result *r, char *why,
		     size_t whylen);
void job_result_clear(struct job_result *r);

/* ---- framing over ZeroMQ -------------------------------------------------------- */

/* Send a message: the type frame first if type is non-NULL, then the body.
 * flags as zmq_send's (ZMQ_DONTWAIT).  0 or -errno. */
int job_send(void *zsock, const char *type, const char *body, size_t len, int flags);
/* Receive one message of one or two frames.  *body is malloc'd and NUL
 * terminated (free it), *len its length; type receives the first frame of a
 * two-frame message (truncated to typelen - 1), or "" for one frame.
 * -EPROTO (the whole message consumed) for three or more frames or a body
 * over JOB_MAX_BYTES; -errno of ZeroMQ otherwise (-EAGAIN, -ETERM, ...). */
int job_recv(void *zsock, int flags, char **body, size_t *len, char *type, size_t typelen);

#endif
