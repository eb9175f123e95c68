/* error.c - return codes to messages. */
#include "shma.h"

#include <string.h>

const char *shma_strerror(int err)
{
	static const char *const lib[] = {
		[-(SHMA_ERAMLIMIT - SHMA_EBASE)] = "RAM limit reached and no clean page to reclaim",
		[-(SHMA_EBUSY - SHMA_EBASE)] = "object still in use",
		[-(SHMA_ENOTMAPPED - SHMA_EBASE)] = "address is not inside a shma mapping",
		[-(SHMA_ERECURSIVE - SHMA_EBASE)] =
			"access to a block from inside its own load (loadblk/mapblk)",
		[-(SHMA_ECONFLICT - SHMA_EBASE)] =
			"conflict: a block or array changed after this transaction's snapshot",
		[-(SHMA_ENOTKEPT - SHMA_EBASE)] = "revision no longer kept by the broker",
		[-(SHMA_EPROTOCOL - SHMA_EBASE)] = "malformed or unexpected protocol message",
		[-(SHMA_EDISCONNECTED - SHMA_EBASE)] =
			"connection to the broker lost (shma_reconnect to go on)",
		[-(SHMA_EFORKED - SHMA_EBASE)] =
			"connection belongs to the parent process (connect anew after fork)",
		[-(SHMA_EREFUSED - SHMA_EBASE)] = "the broker refused the request",
		[-(SHMA_EUNCOMMITTED - SHMA_EBASE)] =
			"the range has uncommitted changes: commit before making a ref",
		[-(SHMA_ESTORE - SHMA_EBASE)] =
			"the ref names another store than the broker's (was it re-created?)",
		[-(SHMA_EBADREF - SHMA_EBASE)] = "malformed ArrayRef",
	};

	if (err == 0)
		return "success";
	if (err < SHMA_EBASE && err > SHMA_ELAST)
		return lib[-(err - SHMA_EBASE)];
	if (err < 0 && err > SHMA_EBASE)
		return strerror(-err); /* glibc: static strings, "Unknown error N" else */
	return "unknown error";
}
