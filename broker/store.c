/* store.c - the in-memory store: committed data lives only in the pool. */
#include "store.h"

#include <stddef.h>

static int memory_write(struct store *st, const struct store_record *rec)
{
	(void)st;
	(void)rec;
	return 0;
}

static const struct store_ops memory_ops = {
	.write = memory_write,
	.close = NULL,
};

struct store store_memory = { .ops = &memory_ops };
