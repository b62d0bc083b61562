/* codec: avro-c and framing. Only this file includes avro.h. Decoding goes Avro value →
 * JSON tree by walking the value (records by field name, unions to their branch, enums to
 * symbols), so validation has one input shape; encoding walks the other way. */
#include "codec.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <avro.h>

#include "arena.h"
#include "file.h"
#include "pcf.h"

static const char *const SCHEMA_FILES[BS_NSCHEMAS] = {
    "BulkSetStateCommand.avsc", "FlowRunOrchestrationResult.avsc", "BulkSetStateCompleted.avsc"};

typedef struct sch {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t value;
    uint64_t fingerprint;
    int version;       /* 1, 2, ...: its number among the released versions */
    int32_t confluent; /* a registry id mapped to it, -1 none */
} sch;

struct bs_codec {
    bs_codec_conf conf;
    sch s[BS_NSCHEMAS]; /* the current versions: what is written, and read by default */
    sch old[BS_NSCHEMAS][BS_MAX_SCHEMA_VERSIONS]; /* the released ones before, read only */
    int nold[BS_NSCHEMAS];
    avro_reader_t reader;
};

/* avro-c's allocator. Each block carries a header so the blocks allocated while a message is
 * decoded can be found again: avro-c 1.11.1 does not free a string or bytes buffer when the
 * read after its allocation fails (AVRO-4246), so after a failed decode we drop the value and
 * free whatever the decode left allocated. Every block is also capped in size: a crafted length
 * would otherwise make avro-c allocate it (up to 2 GiB per string). */
typedef struct blk {
    struct blk *prev, *next;
    size_t size;
    size_t tracked;
} blk;

static size_t alloc_cap = 64u << 20;
static bool tracking;
static blk tracked_head = {&tracked_head, &tracked_head, 0, 0};

static void unlink_blk(blk *b)
{
    if (b->tracked) {
        b->prev->next = b->next;
        b->next->prev = b->prev;
        b->tracked = 0;
    }
}

static void link_blk(blk *b)
{
    b->tracked = 0;
    if (!tracking) return;
    b->tracked = 1;
    b->next = tracked_head.next;
    b->prev = &tracked_head;
    tracked_head.next->prev = b;
    tracked_head.next = b;
}

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    blk *b = ptr ? (blk *)ptr - 1 : NULL;
    if (nsize == 0) {
        if (b) {
            unlink_blk(b);
            free(b);
        }
        return NULL;
    }
    if (nsize > alloc_cap) return NULL; /* avro-c reports ENOMEM; the message is rejected */
    if (b) unlink_blk(b);
    blk *n = realloc(b, sizeof(blk) + nsize);
    if (n == NULL) {
        if (b) link_blk(b);
        return NULL;
    }
    n->size = nsize;
    link_blk(n);
    return n + 1;
}

/* Stops tracking; with free_them, frees every block still tracked (the leaks of a failed
 * decode, once the value that owned the rest was released). */
static void end_tracking(bool free_them)
{
    tracking = false;
    while (tracked_head.next != &tracked_head) {
        blk *b = tracked_head.next;
        unlink_blk(b);
        if (free_them) free(b);
    }
}

/* avro-c is built without THREADSAFE (its error text is one static buffer) and the allocator
 * above keeps one list: every call into avro-c, from any of a worker's threads, holds this. */
static pthread_mutex_t avro_mu = PTHREAD_MUTEX_INITIALIZER;

void bs_codec_cap_allocations(size_t max_bytes)
{
    pthread_mutex_lock(&avro_mu);
    alloc_cap = max_bytes;
    avro_set_allocator(capped_alloc, NULL);
    pthread_mutex_unlock(&avro_mu);
}

const char *bs_framing_name(bs_framing f)
{
    static const char *const n[] = {"single-object", "confluent", "json"};
    return n[f];
}

int bs_framing_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, bs_framing_name((bs_framing)i)) == 0) return i;
    return -1;
}

/* Loads one schema file into s. 0; 1 when the file does not exist and may not (optional);
 * -1 with err. */
static int load_schema(const char *path, bool optional, sch *s, bs_err *err)
{
    if (optional && access(path, R_OK) != 0) return 1;
    char *text = bs_read_file(path, NULL, err);
    if (text == NULL) {
        bs_err_prefix(err, "schema");
        return -1;
    }
    if (avro_schema_from_json_length(text, strlen(text), &s->schema) != 0) {
        bs_err_fatal(err, BS_EINVAL, "could not parse schema \"%s\": %s", path, avro_strerror());
        free(text);
        return -1;
    }
    /* fingerprint of the text as written: avro-c would drop logicalType (harmless for the
     * canonical form, but the file is the source of truth) */
    s->fingerprint = bs_schema_fingerprint(text);
    s->confluent = -1;
    free(text);
    s->iface = avro_generic_class_from_schema(s->schema);
    if (s->iface == NULL || avro_generic_value_new(s->iface, &s->value) != 0)
        return bs_err_fatal(err, BS_ESYS, "could not build Avro class for \"%s\": %s", path,
                            avro_strerror());
    return 0;
}

/* "ID:VERSION,..." onto the command schema's versions. */
static int map_confluent_versions(bs_codec *cd, const char *spec, bs_err *err)
{
    const char *p = spec;
    while (p && *p) {
        char *end;
        long id = strtol(p, &end, 10), v;
        if (end == p || *end != ':' || id < 0 || id > INT32_MAX) goto bad;
        p = end + 1;
        v = strtol(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0')) goto bad;
        p = *end == ',' ? end + 1 : end;
        sch *s = NULL;
        if (v == cd->s[BS_SCHEMA_COMMAND].version) s = &cd->s[BS_SCHEMA_COMMAND];
        for (int k = 0; k < cd->nold[BS_SCHEMA_COMMAND]; k++)
            if (cd->old[BS_SCHEMA_COMMAND][k].version == v) s = &cd->old[BS_SCHEMA_COMMAND][k];
        if (s == NULL)
            return bs_err_fatal(err, BS_EINVAL,
                                "worker.confluent_command_versions: version %ld of %s is not "
                                "known (1..%d)",
                                v, SCHEMA_FILES[BS_SCHEMA_COMMAND],
                                cd->s[BS_SCHEMA_COMMAND].version);
        s->confluent = (int32_t)id;
    }
    return 0;
bad:
    return bs_err_fatal(err, BS_EINVAL,
                        "worker.confluent_command_versions: \"%s\" is not ID:VERSION,...", spec);
}

static void codec_free(bs_codec *cd);

static bs_codec *codec_new(const bs_codec_conf *conf, bs_err *err)
{
    bs_codec *cd = bs_xcalloc(1, sizeof *cd);
    cd->conf = *conf;
    for (int i = 0; i < BS_NSCHEMAS; i++) {
        char path[1024], name[128];
        snprintf(path, sizeof path, "%s/%s", conf->schema_dir, SCHEMA_FILES[i]);
        if (load_schema(path, false, &cd->s[i], err) < 0) goto fail;
        snprintf(name, sizeof name, "%.*s", (int)(strlen(SCHEMA_FILES[i]) - 5), SCHEMA_FILES[i]);
        for (int v = 1; v <= BS_MAX_SCHEMA_VERSIONS; v++) {
            snprintf(path, sizeof path, "%s/versions/%s/%d.avsc", conf->schema_dir, name, v);
            sch *o = &cd->old[i][cd->nold[i]];
            const int rc = load_schema(path, true, o, err);
            if (rc < 0) goto fail;
            if (rc > 0) break;
            o->version = v;
            cd->nold[i]++;
        }
        cd->s[i].version = cd->nold[i] + 1;
        cd->s[i].confluent = conf->confluent_ids[i];
    }
    if (map_confluent_versions(cd, conf->confluent_command_versions, err) < 0) goto fail;
    cd->reader = avro_reader_memory(NULL, 0);
    return cd;
fail:
    codec_free(cd);
    return NULL;
}

static void free_sch(sch *s)
{
    if (s->iface) {
        if (s->value.self) avro_value_decref(&s->value);
        avro_value_iface_decref(s->iface);
    }
    if (s->schema) avro_schema_decref(s->schema);
}

static void codec_free(bs_codec *cd)
{
    if (cd == NULL) return;
    for (int i = 0; i < BS_NSCHEMAS; i++) {
        free_sch(&cd->s[i]);
        for (int k = 0; k <= cd->nold[i] && k < BS_MAX_SCHEMA_VERSIONS; k++)
            free_sch(&cd->old[i][k]); /* (the one past nold: a half-loaded version) */
    }
    if (cd->reader) avro_reader_free(cd->reader);
    free(cd);
}

/* ---- Avro value → JSON ---- */

static json_t *to_json(avro_value_t *v, int depth)
{
    if (depth > 32) return NULL;
    switch (avro_value_get_type(v)) {
    case AVRO_NULL:
        return json_null();
    case AVRO_BOOLEAN: {
        int b = 0;
        avro_value_get_boolean(v, &b);
        return json_boolean(b);
    }
    case AVRO_INT32: {
        int32_t n = 0;
        avro_value_get_int(v, &n);
        return json_integer(n);
    }
    case AVRO_INT64: {
        int64_t n = 0;
        avro_value_get_long(v, &n);
        return json_integer(n);
    }
    case AVRO_DOUBLE: {
        double d = 0;
        avro_value_get_double(v, &d);
        return json_real(d);
    }
    case AVRO_FLOAT: {
        float d = 0;
        avro_value_get_float(v, &d);
        return json_real(d);
    }
    case AVRO_STRING: {
        const char *s = NULL;
        size_t n = 0;
        avro_value_get_string(v, &s, &n);
        if (s != NULL && n > 1 && memchr(s, '\0', n - 1) != NULL)
            return NULL; /* PostgreSQL text cannot hold NUL: never truncate silently */
        return json_stringn(s ? s : "", n ? n - 1 : 0); /* NULL if not UTF-8 */
    }
    case AVRO_ENUM: {
        int e = 0;
        avro_value_get_enum(v, &e);
        avro_schema_t es = avro_value_get_schema(v);
        /* avro-c reads the index unchecked, and its symbol lookup answers garbage for an index
         * out of range (found by tests/fuzz/fuzz_avro.c) */
        if (e < 0 || e >= avro_schema_enum_number_of_symbols(es)) return NULL;
        const char *sym = avro_schema_enum_get(es, e);
        return sym ? json_string(sym) : NULL;
    }
    case AVRO_UNION: {
        avro_value_t b;
        if (avro_value_get_current_branch(v, &b) != 0) return NULL;
        return to_json(&b, depth + 1);
    }
    case AVRO_RECORD:
    case AVRO_MAP: {
        size_t n = 0;
        json_t *o = json_object();
        avro_value_get_size(v, &n);
        for (size_t i = 0; i < n; i++) {
            avro_value_t c;
            const char *name = NULL;
            if (avro_value_get_by_index(v, i, &c, &name) != 0 || name == NULL) {
                json_decref(o);
                return NULL;
            }
            json_t *cj = to_json(&c, depth + 1);
            if (cj == NULL) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, name, cj);
        }
        return o;
    }
    case AVRO_ARRAY: {
        size_t n = 0;
        json_t *a = json_array();
        avro_value_get_size(v, &n);
        for (size_t i = 0; i < n; i++) {
            avro_value_t c;
            json_t *cj =
                avro_value_get_by_index(v, i, &c, NULL) == 0 ? to_json(&c, depth + 1) : NULL;
            if (cj == NULL) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, cj);
        }
        return a;
    }
    default:
        return NULL; /* bytes, fixed: not in our schemas */
    }
}

/* ---- JSON → Avro value ---- */

static int from_json(avro_value_t *v, const json_t *j, const char *path, bs_err *err)
{
    switch (avro_value_get_type(v)) {
    case AVRO_NULL:
        return avro_value_set_null(v);
    case AVRO_BOOLEAN:
        if (j == NULL)
            return avro_value_set_boolean(v, 0); /* our boolean fields default to false */
        if (!json_is_boolean(j)) break;
        return avro_value_set_boolean(v, json_is_true(j));
    case AVRO_INT32:
        if (!json_is_integer(j) || json_integer_value(j) < INT32_MIN ||
            json_integer_value(j) > INT32_MAX)
            break;
        return avro_value_set_int(v, (int32_t)json_integer_value(j));
    case AVRO_INT64:
        if (!json_is_integer(j)) break;
        return avro_value_set_long(v, json_integer_value(j));
    case AVRO_DOUBLE:
        if (!json_is_number(j)) break;
        return avro_value_set_double(v, json_number_value(j));
    case AVRO_STRING:
        if (!json_is_string(j)) break;
        return avro_value_set_string_len(v, json_string_value(j), json_string_length(j) + 1);
    case AVRO_ENUM: {
        avro_schema_t s = avro_value_get_schema(v);
        if (j == NULL)
            return avro_value_set_enum(v, 0); /* our enum fields default to their first symbol */
        int e = json_is_string(j) ? avro_schema_enum_get_by_name(s, json_string_value(j)) : -1;
        if (e < 0) break;
        return avro_value_set_enum(v, e);
    }
    case AVRO_UNION: {
        avro_schema_t s = avro_value_get_schema(v);
        size_t n = avro_schema_union_size(s);
        bool want_null = j == NULL || json_is_null(j);
        for (size_t i = 0; i < n; i++) {
            avro_schema_t b = avro_schema_union_branch(s, (int)i);
            if (is_avro_null(b) != want_null) continue;
            avro_value_t bv;
            if (avro_value_set_branch(v, (int)i, &bv) != 0) break;
            return want_null ? avro_value_set_null(&bv) : from_json(&bv, j, path, err);
        }
        break;
    }
    case AVRO_RECORD: {
        size_t n = 0;
        const char *k;
        json_t *kv;
        if (!json_is_object(j)) break;
        /* Prefect ignores unknown keys at the top of the body and in state_details, and
         * forbids them everywhere else: refuse to drop those silently */
        size_t plen = strlen(path);
        bool lenient = plen == 0 || (plen >= 13 && strcmp(path + plen - 13, "state_details") == 0);
        json_object_foreach((json_t *)j, k, kv)
        {
            avro_value_t c;
            if (!lenient && avro_value_get_by_name(v, k, &c, NULL) != 0)
                return bs_err_input(err, "extra_forbidden", path,
                                    "\"%s%s%s\" has no place in the Avro schema", path,
                                    *path ? "." : "", k);
        }
        avro_value_get_size(v, &n);
        for (size_t i = 0; i < n; i++) {
            avro_value_t c;
            const char *name = NULL;
            char cpath[256];
            avro_value_get_by_index(v, i, &c, &name);
            snprintf(cpath, sizeof cpath, "%s%s%s", path, *path ? "." : "", name);
            if (from_json(&c, json_object_get(j, name), cpath, err) != 0) return -1;
        }
        return 0;
    }
    case AVRO_MAP: {
        const char *k;
        json_t *cj;
        if (!json_is_object(j)) break;
        json_object_foreach((json_t *)j, k, cj)
        {
            avro_value_t c;
            if (avro_value_add(v, k, &c, NULL, NULL) != 0 || from_json(&c, cj, path, err) != 0)
                return -1;
        }
        return 0;
    }
    case AVRO_ARRAY:
        if (!json_is_array(j)) break;
        for (size_t i = 0; i < json_array_size(j); i++) {
            avro_value_t c;
            char cpath[256];
            snprintf(cpath, sizeof cpath, "%s[%zu]", path, i);
            if (avro_value_append(v, &c, NULL) != 0 ||
                from_json(&c, json_array_get(j, i), cpath, err) != 0)
                return -1;
        }
        return 0;
    default:
        break;
    }
    if (err->msg[0] == '\0')
        bs_err_input(err, "avro_encode", path, "value of \"%s\" does not fit its Avro type", path);
    return -1;
}

json_t *bs_codec_body_to_command(const json_t *body)
{
    json_t *c = json_deep_copy(body);
    json_t *st = json_object_get(c, "state");
    json_t *data = json_is_object(st) ? json_object_get(st, "data") : NULL;
    if (data != NULL && !json_is_null(data)) {
        char *txt = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        json_object_set_new(st, "data", json_string(txt));
        free(txt);
    }
    if (json_object_get(c, "limit") == NULL || json_is_null(json_object_get(c, "limit")))
        json_object_set_new(c, "limit", json_integer(50));
    return c;
}

/* ---- framing ---- */

static int codec_decode(bs_codec *cd, bs_schema which, const void *buf, size_t len, bool json,
                        json_t **out, bs_err *err)
{
    const unsigned char *p = buf;
    *out = NULL;
    if (len > cd->conf.max_message_bytes)
        return bs_err_input(err, "message_too_large", "",
                            "message of %zu bytes exceeds max_message_bytes (%zu)", len,
                            cd->conf.max_message_bytes);
    if (json) {
        json_error_t jerr;
        *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (*out == NULL)
            return bs_err_input(err, "json_parse", "", "invalid JSON at line %d column %d: %s",
                                jerr.line, jerr.column, jerr.text);
        return 0;
    }
    size_t off;
    sch *s = NULL;
    if (len >= 10 && p[0] == 0xC3 && p[1] == 0x01) {
        uint64_t fp = 0;
        for (int i = 7; i >= 0; i--)
            fp = fp << 8 | p[2 + i];
        if (fp == cd->s[which].fingerprint) s = &cd->s[which];
        for (int k = 0; s == NULL && k < cd->nold[which]; k++)
            if (fp == cd->old[which][k].fingerprint) s = &cd->old[which][k];
        if (s == NULL)
            return bs_err_input(err, "unknown_schema", "",
                                "single-object fingerprint %016llx is none of the %d versions of "
                                "%s (the current one is %016llx)",
                                (unsigned long long)fp, cd->nold[which] + 1, SCHEMA_FILES[which],
                                (unsigned long long)cd->s[which].fingerprint);
        off = 10;
    } else if (len >= 5 && p[0] == 0x00) {
        int32_t id =
            (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
        if (cd->s[which].confluent >= 0 && id == cd->s[which].confluent) s = &cd->s[which];
        for (int k = 0; s == NULL && k < cd->nold[which]; k++)
            if (cd->old[which][k].confluent >= 0 && id == cd->old[which][k].confluent)
                s = &cd->old[which][k];
        if (s == NULL)
            return bs_err_input(err, "unknown_schema", "",
                                "Confluent schema id %d is not mapped to %s in the config", id,
                                SCHEMA_FILES[which]);
        off = 5;
    } else {
        return bs_err_input(err, "bad_framing", "",
                            "unknown framing: expected Avro single-object (C3 01), Confluent "
                            "(00 + schema id) or a content-type: application/json header");
    }
    avro_reader_memory_set_source(cd->reader, (const char *)p + off, (int64_t)(len - off));
    avro_value_reset(&s->value);
    tracking = true;
    if (avro_value_read(cd->reader, &s->value) != 0) {
        bs_err_input(err, "avro_decode", "", "could not decode Avro body: %s", avro_strerror());
        /* release the value, then what the failed read leaked; start with a fresh value */
        avro_value_decref(&s->value);
        end_tracking(true);
        if (avro_generic_value_new(s->iface, &s->value) != 0)
            abort(); /* out of memory for a few hundred bytes */
        return -1;
    }
    end_tracking(false);
    if (avro_skip(cd->reader, 1) == 0)
        return bs_err_input(err, "avro_decode", "", "trailing bytes after the Avro record");
    *out = to_json(&s->value, 0);
    avro_value_reset(&s->value);
    if (*out == NULL)
        return bs_err_input(err, "avro_decode", "",
                            "could not convert the Avro record: a string is not UTF-8 or "
                            "contains NUL, or the nesting is too deep");
    if (which == BS_SCHEMA_COMMAND) {
        json_t *st = json_object_get(*out, "state");
        json_t *data = json_is_object(st) ? json_object_get(st, "data") : NULL;
        if (json_is_string(data)) {
            json_error_t jerr;
            json_t *parsed = json_loads(json_string_value(data), JSON_DECODE_ANY, &jerr);
            if (parsed == NULL) {
                json_decref(*out);
                *out = NULL;
                return bs_err_input(err, "json_parse", "state.data",
                                    "state.data is not JSON text: %s", jerr.text);
            }
            json_object_set_new(st, "data", parsed);
        }
        /* Avro cannot leave a field out: a null detail means "not given", so the JSON body's
         * defaults apply (deferred is false, not null, when absent) */
        json_t *det = json_is_object(st) ? json_object_get(st, "state_details") : NULL;
        if (json_is_object(det)) {
            const char *k;
            json_t *v;
            void *tmp;
            json_object_foreach_safe(det, tmp, k, v)
            {
                if (json_is_null(v)) json_object_del(det, k);
            }
        }
    }
    return 0;
}

static int codec_decode_reply(bs_codec *cd, const void *buf, size_t len, bool json, json_t **out,
                              bool *is_result, bs_err *err)
{
    if (codec_decode(cd, BS_SCHEMA_RESULT, buf, len, json, out, err) == 0) {
        *is_result = !json || json_object_get(*out, "seq") != NULL;
        return 0;
    }
    memset(err, 0, sizeof *err);
    *is_result = false;
    return codec_decode(cd, BS_SCHEMA_COMPLETED, buf, len, json, out, err);
}

static int codec_encode(bs_codec *cd, bs_schema which, const json_t *j, bs_framing framing,
                        unsigned char **buf, size_t *len, bs_err *err)
{
    *buf = NULL;
    *len = 0;
    if (framing == BS_FRAME_JSON) {
        char *txt = json_dumps(j, JSON_COMPACT);
        *len = strlen(txt);
        *buf = (unsigned char *)txt;
        return 0;
    }
    sch *s = &cd->s[which];
    avro_value_reset(&s->value);
    err->msg[0] = '\0';
    if (from_json(&s->value, j, "", err) != 0) {
        err->code = BS_EENCODE; /* type and field say where the record does not fit */
        return -1;
    }
    size_t body = 0;
    if (avro_value_sizeof(&s->value, &body) != 0)
        return bs_err_set(err, BS_EENCODE, "could not size Avro record: %s", avro_strerror());
    size_t hdr = framing == BS_FRAME_SINGLE_OBJECT ? 10 : 5;
    unsigned char *out = bs_xmalloc(hdr + body);
    if (framing == BS_FRAME_SINGLE_OBJECT) {
        out[0] = 0xC3;
        out[1] = 0x01;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (unsigned char)(s->fingerprint >> (8 * i));
    } else {
        uint32_t id = (uint32_t)cd->conf.confluent_ids[which];
        if (cd->conf.confluent_ids[which] < 0) {
            free(out);
            return bs_err_set(err, BS_EENCODE, "no Confluent schema id configured for %s",
                              SCHEMA_FILES[which]);
        }
        out[0] = 0;
        out[1] = (unsigned char)(id >> 24);
        out[2] = (unsigned char)(id >> 16);
        out[3] = (unsigned char)(id >> 8);
        out[4] = (unsigned char)id;
    }
    avro_writer_t w = avro_writer_memory((const char *)out + hdr, (int64_t)body);
    int rc = avro_value_write(w, &s->value);
    avro_writer_free(w);
    if (rc != 0) {
        free(out);
        return bs_err_set(err, BS_EENCODE, "could not write Avro record: %s", avro_strerror());
    }
    *buf = out;
    *len = hdr + body;
    return 0;
}

/* ---- the public calls, one at a time (avro_mu) ---- */

bs_codec *bs_codec_new(const bs_codec_conf *conf, bs_err *err)
{
    pthread_mutex_lock(&avro_mu);
    bs_codec *cd = codec_new(conf, err);
    pthread_mutex_unlock(&avro_mu);
    return cd;
}

void bs_codec_free(bs_codec *cd)
{
    pthread_mutex_lock(&avro_mu);
    codec_free(cd);
    pthread_mutex_unlock(&avro_mu);
}

int bs_codec_decode(bs_codec *cd, bs_schema which, const void *buf, size_t len, bool json,
                    json_t **out, bs_err *err)
{
    pthread_mutex_lock(&avro_mu);
    const int rc = codec_decode(cd, which, buf, len, json, out, err);
    pthread_mutex_unlock(&avro_mu);
    return rc;
}

int bs_codec_decode_reply(bs_codec *cd, const void *buf, size_t len, bool json, json_t **out,
                          bool *is_result, bs_err *err)
{
    pthread_mutex_lock(&avro_mu);
    const int rc = codec_decode_reply(cd, buf, len, json, out, is_result, err);
    pthread_mutex_unlock(&avro_mu);
    return rc;
}

int bs_codec_encode(bs_codec *cd, bs_schema which, const json_t *j, bs_framing framing,
                    unsigned char **buf, size_t *len, bs_err *err)
{
    pthread_mutex_lock(&avro_mu);
    const int rc = codec_encode(cd, which, j, framing, buf, len, err);
    pthread_mutex_unlock(&avro_mu);
    return rc;
}
