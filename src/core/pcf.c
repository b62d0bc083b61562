/* pcf: the [PRIMITIVES] [FULLNAMES] [STRIP] [ORDER] [STRINGS] [WHITESPACE] transformations of
 * the Avro specification, over a jansson tree. Named types already written are referenced by
 * full name. Pure. */
#include "pcf.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef struct sb {
    char *s;
    size_t n, cap;
} sb;

static void put(sb *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l + 1 > b->cap) {
        b->cap = (b->n + l + 1) * 2;
        char *ns = realloc(b->s, b->cap);
        if (ns == NULL) abort();
        b->s = ns;
    }
    memcpy(b->s + b->n, s, l + 1);
    b->n += l;
}

static void put_str(sb *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    put(b, t);
    free(t);
    json_decref(j);
}

static bool primitive(const char *t)
{
    static const char *const p[] = {"null",  "boolean", "int",   "long",
                                    "float", "double",  "bytes", "string"};
    for (size_t i = 0; i < 8; i++)
        if (strcmp(t, p[i]) == 0) return true;
    return false;
}

static void fullname(const char *name, const char *ns, char *out, size_t n)
{
    if (strchr(name, '.') || ns == NULL || *ns == '\0')
        snprintf(out, n, "%s", name);
    else
        snprintf(out, n, "%s.%s", ns, name);
}

static bool canon(const json_t *s, const char *ns, json_t *defined, sb *b);

static bool canon_named(const json_t *s, const char *type, const char *ns, json_t *defined, sb *b)
{
    const char *name = json_string_value(json_object_get(s, "name"));
    const char *own_ns = json_string_value(json_object_get(s, "namespace"));
    char full[512], inner_ns[512];
    if (name == NULL) return false;
    fullname(name, own_ns ? own_ns : ns, full, sizeof full);
    if (json_object_get(defined, full)) {
        put_str(b, full);
        return true;
    }
    json_object_set_new(defined, full, json_true());
    /* the namespace of nested definitions is the one of this full name */
    const char *dot = strrchr(full, '.');
    snprintf(inner_ns, sizeof inner_ns, "%.*s", dot ? (int)(dot - full) : 0, full);
    put(b, "{\"name\":");
    put_str(b, full);
    put(b, ",\"type\":");
    put_str(b, type);
    if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0) {
        const json_t *fields = json_object_get(s, "fields");
        if (!json_is_array(fields)) return false;
        put(b, ",\"fields\":[");
        for (size_t i = 0; i < json_array_size(fields); i++) {
            const json_t *f = json_array_get(fields, i);
            const char *fname = json_string_value(json_object_get(f, "name"));
            if (fname == NULL) return false;
            put(b, i ? ",{\"name\":" : "{\"name\":");
            put_str(b, fname);
            put(b, ",\"type\":");
            if (!canon(json_object_get(f, "type"), inner_ns, defined, b)) return false;
            put(b, "}");
        }
        put(b, "]");
    } else if (strcmp(type, "enum") == 0) {
        const json_t *sym = json_object_get(s, "symbols");
        if (!json_is_array(sym)) return false;
        put(b, ",\"symbols\":[");
        for (size_t i = 0; i < json_array_size(sym); i++) {
            if (i) put(b, ",");
            put_str(b, json_string_value(json_array_get(sym, i)));
        }
        put(b, "]");
    } else { /* fixed */
        char num[32];
        snprintf(num, sizeof num, ",\"size\":%lld",
                 (long long)json_integer_value(json_object_get(s, "size")));
        put(b, num);
    }
    put(b, "}");
    return true;
}

static bool canon(const json_t *s, const char *ns, json_t *defined, sb *b)
{
    if (json_is_string(s)) {
        const char *t = json_string_value(s);
        char full[512];
        if (primitive(t)) {
            put_str(b, t);
        } else {
            fullname(t, ns, full, sizeof full);
            put_str(b, full);
        }
        return true;
    }
    if (json_is_array(s)) {
        put(b, "[");
        for (size_t i = 0; i < json_array_size(s); i++) {
            if (i) put(b, ",");
            if (!canon(json_array_get(s, i), ns, defined, b)) return false;
        }
        put(b, "]");
        return true;
    }
    if (!json_is_object(s)) return false;
    const json_t *tj = json_object_get(s, "type");
    if (!json_is_string(tj)) return canon(tj, ns, defined, b);
    const char *t = json_string_value(tj);
    if (primitive(t)) {
        put_str(b, t);
        return true;
    }
    if (strcmp(t, "array") == 0) {
        put(b, "{\"type\":\"array\",\"items\":");
        if (!canon(json_object_get(s, "items"), ns, defined, b)) return false;
        put(b, "}");
        return true;
    }
    if (strcmp(t, "map") == 0) {
        put(b, "{\"type\":\"map\",\"values\":");
        if (!canon(json_object_get(s, "values"), ns, defined, b)) return false;
        put(b, "}");
        return true;
    }
    if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0 || strcmp(t, "enum") == 0 ||
        strcmp(t, "fixed") == 0)
        return canon_named(s, t, ns, defined, b);
    return canon(tj, ns, defined, b); /* a reference to a named type */
}

char *bs_pcf(const char *schema_json)
{
    json_t *s = json_loads(schema_json, JSON_DECODE_ANY, NULL);
    json_t *defined = json_object();
    sb b = {0};
    bool ok = s != NULL && canon(s, "", defined, &b);
    json_decref(s);
    json_decref(defined);
    if (!ok) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

uint64_t bs_crc64_avro(const void *buf, size_t len)
{
    static const uint64_t EMPTY = 0xc15d213aa4d7a795ULL;
    uint64_t table[256];
    for (int i = 0; i < 256; i++) {
        uint64_t fp = (uint64_t)i;
        for (int j = 0; j < 8; j++)
            fp = (fp >> 1) ^ (EMPTY & (0 - (fp & 1)));
        table[i] = fp;
    }
    uint64_t fp = EMPTY;
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        fp = (fp >> 8) ^ table[(fp ^ p[i]) & 0xff];
    return fp;
}

uint64_t bs_schema_fingerprint(const char *schema_json)
{
    char *c = bs_pcf(schema_json);
    if (c == NULL) return 0;
    uint64_t fp = bs_crc64_avro(c, strlen(c));
    free(c);
    return fp;
}
