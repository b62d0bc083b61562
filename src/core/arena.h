/* arena: per-message bump allocator. Everything decoded for one command lives here and is
 * released at once by bs_arena_reset (PostgreSQL's per-message memory context). Allocation
 * failure aborts, as in Redis: callers never check for NULL. */
#ifndef BS_ARENA_H
#define BS_ARENA_H

#include <stddef.h>

typedef struct bs_arena bs_arena;

bs_arena *bs_arena_new(void);
void bs_arena_free(bs_arena *ar); /* NULL is a no-op */
void bs_arena_reset(bs_arena *ar);
/* Returns zeroed memory aligned for any type, owned by the arena. */
void *bs_arena_alloc(bs_arena *ar, size_t size);
/* Copies s (NULL gives NULL). */
char *bs_arena_strdup(bs_arena *ar, const char *s);
char *bs_arena_strndup(bs_arena *ar, const char *s, size_t n);
/* printf into the arena. */
char *bs_arena_printf(bs_arena *ar, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Abort-on-OOM wrappers for the few long-lived allocations outside an arena. */
void *bs_xmalloc(size_t size);
void *bs_xcalloc(size_t n, size_t size);
void *bs_xrealloc(void *p, size_t size);
char *bs_xstrdup(const char *s);

#endif
