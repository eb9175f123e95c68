/* names.h - the rule for array names (internal; shared by the broker, the
 * client and the ArrayRef decoder). */
#ifndef SHMA_NAMES_H
#define SHMA_NAMES_H

#include <stdbool.h>

#define NAME_MAX_LEN 200

/* 1..200 bytes of [A-Za-z0-9._-/], not starting with '/' or '.', and every
 * '/' followed by a letter, digit, '_' or '-' (so no "//", "/." or trailing
 * '/').  *why says which rule broke. */
bool name_ok(const char *name, const char **why);

#endif
