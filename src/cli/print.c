/* cli: human-readable rendering of replies, shared by `send` and `status`. */
#include "print.h"

#include <stdio.h>

#include "text.h"

/* A string member of o, escaped for the terminal (text.h) into buf (4 * 1024 + 1 bytes). */
#define SAFE_MAX 4097
static const char *safe(const json_t *o, const char *key, char *buf)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? bs_text_escape(s, buf, SAFE_MAX) : NULL;
}

void bs_cli_print_result(const json_t *r)
{
    char b1[SAFE_MAX], b2[SAFE_MAX], b3[SAFE_MAX];
    const json_t *st = json_object_get(r, "state");
    const json_t *det = json_object_get(r, "details");
    const char *reason = safe(det, "reason", b3);
    printf("  [%lld] %s  %-6s", (long long)json_integer_value(json_object_get(r, "seq")),
           safe(r, "flow_run_id", b1), safe(r, "status", b2));
    if (json_is_object(st))
        printf("  state=%s \"%s\"", safe(st, "type", b1), safe(st, "name", b2));
    else
        printf("  state=null");
    if (json_is_integer(json_object_get(det, "delay_seconds")))
        printf("  delay_seconds=%lld",
               (long long)json_integer_value(json_object_get(det, "delay_seconds")));
    if (reason) printf("  reason: %s", reason);
    printf("\n");
}

int bs_cli_print_completion(const json_t *c, const char *id)
{
    char b0[SAFE_MAX], b1[SAFE_MAX], b2[SAFE_MAX], b3[SAFE_MAX], b4[SAFE_MAX];
    const json_t *e = json_object_get(c, "error");
    id = bs_text_escape(id, b0, sizeof b0);
    if (json_is_object(e)) {
        const char *type = safe(e, "type", b1);
        const char *field = safe(e, "field", b2);
        printf("command %s: error %s%s%s%s%s%s: %s\n", id, safe(e, "code", b3), type ? " (" : "",
               type ? type : "", type ? ")" : "", field ? " at " : "", field ? field : "",
               safe(e, "message", b4));
        return 1;
    }
    printf("command %s: matched=%lld accepted=%lld rejected=%lld waited=%lld aborted=%lld%s\n", id,
           (long long)json_integer_value(json_object_get(c, "matched")),
           (long long)json_integer_value(json_object_get(c, "accepted")),
           (long long)json_integer_value(json_object_get(c, "rejected")),
           (long long)json_integer_value(json_object_get(c, "waited")),
           (long long)json_integer_value(json_object_get(c, "aborted")),
           json_is_true(json_object_get(c, "replayed")) ? " (replayed from the record)" : "");
    return 0;
}
