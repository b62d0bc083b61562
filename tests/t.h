/* t.h: the unit-test harness. CHECK records a failure and goes on; each binary ends with
 * "N passed, N failed" and exits non-zero on any failure, or when no check ran at all. */
#ifndef BS_T_H
#define BS_T_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond)                                                                                  \
            t_passed++;                                                                            \
        else {                                                                                     \
            t_failed++;                                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0)                                       \
            t_passed++;                                                                            \
        else if (g_ == NULL && w_ == NULL)                                                         \
            t_passed++;                                                                            \
        else {                                                                                     \
            t_failed++;                                                                            \
            fprintf(stderr, "%s:%d: %s\n   got: %s\n  want: %s\n", __FILE__, __LINE__, #got,       \
                    g_ ? g_ : "(null)", w_ ? w_ : "(null)");                                       \
        }                                                                                          \
    } while (0)

#define CHECK_INT(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ == w_)                                                                              \
            t_passed++;                                                                            \
        else {                                                                                     \
            t_failed++;                                                                            \
            fprintf(stderr, "%s:%d: %s = %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_);    \
        }                                                                                          \
    } while (0)

/* A binary that checked nothing has tested nothing: that is a failure too. */
static inline int t_done(void)
{
    if (t_passed + t_failed == 0) {
        fprintf(stderr, "no check ran\n");
        t_failed = 1;
    }
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

#endif
