/* Escaping of outside text for messages and summaries. */
#include "text_escape.h"

#include <string.h>

char *eplb_text_escape_bytes(char *dst, size_t dst_len, const void *src, size_t src_len)
{
    static const char hex[] = "0123456789abcdef";
    if (!dst || dst_len == 0)
        return dst;
    const unsigned char *s = src;
    size_t used = 0;
    for (size_t i = 0; s && i < src_len; i++) {
        unsigned char c = s[i];
        int printable = c >= 0x20 && c < 0x7f;
        size_t need = printable ? 1 : 4;
        if (used + need >= dst_len)
            break;
        if (printable) {
            dst[used++] = (char)c;
        } else {
            dst[used++] = '\\';
            dst[used++] = 'x';
            dst[used++] = hex[c >> 4];
            dst[used++] = hex[c & 15];
        }
    }
    dst[used] = '\0';
    return dst;
}

char *eplb_text_escape(char *dst, size_t dst_len, const char *src)
{
    return eplb_text_escape_bytes(dst, dst_len, src, src ? strlen(src) : 0);
}
