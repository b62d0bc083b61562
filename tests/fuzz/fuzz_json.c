/* libFuzzer harness: a JSON request body (the seed endpoint's body, as `bulkstate send` and
 * JSON-framed commands carry it) through parsing, validation (every filter field, the state,
 * its details, force, limit) and the filter-to-SQL compiler. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arena.h"
#include "command.h"
#include "filter_sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bs_arena *ar;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ar == NULL) ar = bs_arena_new();
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (body != NULL) {
        bs_err err = {0};
        bs_command cmd;
        if (bs_command_from_json(body, NULL, 1700000000000000LL, ar, &cmd, &err) == 0) {
            bs_sql sql;
            bs_filter_select_sql(&cmd.filter, cmd.limit, ar, &sql);
            if (sql.text == NULL) abort();
        } else if (err.code == 0 || err.msg[0] == '\0') {
            abort(); /* a rejection names its problem */
        }
        (void)bs_command_id_peek(body, ar);
        json_decref(body);
    }
    bs_arena_reset(ar);
    return 0;
}
