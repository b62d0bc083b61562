/* arena: chunked bump allocator; chunks are kept across resets so a steady worker stops
 * calling malloc. No I/O here. */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_MIN 16384

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    max_align_t data[];
} chunk;

struct bs_arena {
    chunk *head; /* chunk being filled; older full chunks follow */
    size_t total;
};

void *bs_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL) {
        fputs("bulkstate: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *bs_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        fputs("bulkstate: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *bs_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL) {
        fputs("bulkstate: out of memory\n", stderr);
        abort();
    }
    return q;
}

char *bs_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(bs_xmalloc(n), s, n);
}

bs_arena *bs_arena_new(void)
{
    return bs_xcalloc(1, sizeof(bs_arena));
}

void bs_arena_free(bs_arena *ar)
{
    if (ar == NULL) return;
    for (chunk *c = ar->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(ar);
}

void bs_arena_reset(bs_arena *ar)
{
    /* keep only the first (largest recent) chunk to bound idle memory */
    if (ar->head == NULL) return;
    chunk *keep = ar->head;
    for (chunk *c = keep->next, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    keep->next = NULL;
    keep->used = 0;
    ar->total = 0;
}

void *bs_arena_alloc(bs_arena *ar, size_t size)
{
    const size_t align = sizeof(max_align_t);
    size = (size + align - 1) / align * align;
    chunk *c = ar->head;
    if (c == NULL || c->size - c->used < size) {
        size_t cap = size > CHUNK_MIN ? size : CHUNK_MIN;
        if (c != NULL && c->size * 2 > cap && c->size < (1u << 24)) cap = c->size * 2;
        chunk *n = bs_xmalloc(sizeof(chunk) + cap);
        n->size = cap;
        n->used = 0;
        n->next = c;
        ar->head = c = n;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    ar->total += size;
    memset(p, 0, size);
    return p;
}

char *bs_arena_strndup(bs_arena *ar, const char *s, size_t n)
{
    if (s == NULL) return NULL;
    char *d = bs_arena_alloc(ar, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *bs_arena_strdup(bs_arena *ar, const char *s)
{
    return s ? bs_arena_strndup(ar, s, strlen(s)) : NULL;
}

char *bs_arena_printf(bs_arena *ar, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *d = bs_arena_alloc(ar, (size_t)(n < 0 ? 0 : n) + 1);
    vsnprintf(d, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return d;
}
