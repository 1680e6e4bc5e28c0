/* Text from outside (file names, tokens of an input file) made safe to print:
 * a name or token holding ESC sequences must not drive the user's terminal. */
#ifndef EPLB_TOOLS_TEXT_ESCAPE_H
#define EPLB_TOOLS_TEXT_ESCAPE_H

#include <stddef.h>

/* Copies the NUL-terminated src into dst with every byte outside printable
 * ASCII (0x20 to 0x7e) written as \xHH, and returns dst. The result is always
 * NUL-terminated when dst_len > 0; when dst is too small it ends at the last
 * whole character or escape that fits. Bytes of 0x80 and above are escaped
 * too, since some terminals read them as 8-bit control codes. */
char *eplb_text_escape(char *dst, size_t dst_len, const char *src);

/* The same for src_len bytes of src, which may hold NUL bytes. */
char *eplb_text_escape_bytes(char *dst, size_t dst_len, const void *src, size_t src_len);

#endif
