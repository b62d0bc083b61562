/* cli: human-readable rendering of replies, shared by `send` and `status`. */
#include "print.h"

#include <stdio.h>

void bs_cli_print_result(const json_t *r)
{
    const json_t *st = json_object_get(r, "state");
    const json_t *det = json_object_get(r, "details");
    const char *reason = json_string_value(json_object_get(det, "reason"));
    printf("  [%lld] %s  %-6s", (long long)json_integer_value(json_object_get(r, "seq")),
           json_string_value(json_object_get(r, "flow_run_id")),
           json_string_value(json_object_get(r, "status")));
    if (json_is_object(st))
        printf("  state=%s \"%s\"", json_string_value(json_object_get(st, "type")),
               json_string_value(json_object_get(st, "name")));
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
    const json_t *e = json_object_get(c, "error");
    if (json_is_object(e)) {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *field = json_string_value(json_object_get(e, "field"));
        printf("command %s: error %s%s%s%s%s%s: %s\n", id,
               json_string_value(json_object_get(e, "code")), type ? " (" : "", type ? type : "",
               type ? ")" : "", field ? " at " : "", field ? field : "",
               json_string_value(json_object_get(e, "message")));
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
