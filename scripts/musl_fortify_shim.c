/* musl has no glibc _FORTIFY_SOURCE entry points; Debian's LLVM libunwind.a references __fprintf_chk */
#include <stdarg.h>
#include <stdio.h>
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
    (void)flag; va_list ap; va_start(ap, fmt); int r = vfprintf(f, fmt, ap); va_end(ap); return r;
}
