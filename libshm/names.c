/* names.c - the rule for array names (see names.h). */
#include "names.h"

#include <string.h>

bool name_ok(const char *name, const char **why)
{
	size_t i, len = strlen(name);

	if (len == 0 || len > NAME_MAX_LEN) {
		*why = "an array name is 1 to 200 bytes long";
		return false;
	}
	if (name[0] == '/' || name[0] == '.') {
		*why = "an array name must not start with '/' or '.'";
		return false;
	}
	for (i = 0; i < len; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' ||
		      ch == '/')) {
			*why = "an array name may contain only letters, digits, '.', '_', '-' "
			       "and '/'";
			return false;
		}
		if (ch == '/' && (name[i + 1] == '/' || name[i + 1] == '.' || name[i + 1] == 0)) {
			*why = "a '/' in an array name must be followed by a letter, digit, "
			       "'_' or '-'";
			return false;
		}
	}
	return true;
}
