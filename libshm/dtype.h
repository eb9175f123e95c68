/* dtype.h - NumPy type strings (internal; shared by the broker and clients).
 *
 * A type string is byte order + kind + item size: "<f8", ">i4", "|b1", "|u1".
 * Supported: b1; i1 i2 i4 i8; u1 u2 u4 u8; f2 f4 f8; c8 c16.  Byte order is
 * '<' (little), '>' (big), '|' (not applicable: 1-byte types) or '=' (native,
 * normalised to '<' or '>').  1-byte types accept any order and normalise to
 * '|'.
 */
#ifndef SHMA_DTYPE_H
#define SHMA_DTYPE_H

#include <stdbool.h>
#include <stddef.h>

struct dtype {
	char kind;	 /* 'b' 'i' 'u' 'f' 'c' */
	unsigned size;	 /* bytes per item */
	bool big_endian; /* meaningful when size > 1 */
	char str[5];	 /* normalised type string, NUL-terminated */
};

/* Parse s; 0 or -EINVAL with *why set to a static reason. */
int dtype_parse(const char *s, struct dtype *dt, const char **why);

#endif
