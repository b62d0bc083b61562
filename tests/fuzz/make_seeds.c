/* Writes the fuzz corpora's seeds: each JSON body given on the command line, as the seed
 * file itself (corpus/json) and Avro-encoded in single-object and Confluent framing
 * (corpus/avro). Run by scripts/fuzz.sh --seeds; the seeds are committed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "file.h"

/* prefix: 0, or the byte fuzz_avro reads as the content-type ('J' JSON, 'B' binary) */
static void write_file(const char *dir, const char *name, const char *suffix, char prefix,
                       const unsigned char *buf, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, suffix);
    FILE *f = fopen(path, "wb");
    if (f != NULL && prefix) fputc(prefix, f);
    if (f == NULL || fwrite(buf, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fuzz_seeds OUTDIR BODY.json...\n");
        return 64;
    }
    bs_codec_conf conf = {.schema_dir = BS_SOURCE_DIR "/schemas",
                          .max_message_bytes = 1 << 20,
                          .confluent_ids = {7, 8, 9}};
    bs_err err = {0};
    bs_codec *cd = bs_codec_new(&conf, &err);
    if (cd == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char json_dir[512], avro_dir[512];
    snprintf(json_dir, sizeof json_dir, "%s/json", argv[1]);
    snprintf(avro_dir, sizeof avro_dir, "%s/avro", argv[1]);
    for (int i = 2; i < argc; i++) {
        size_t len;
        char *text = bs_read_file(argv[i], &len, &err);
        json_t *body = text ? json_loadb(text, len, 0, NULL) : NULL;
        if (body == NULL) {
            fprintf(stderr, "%s: not JSON\n", argv[i]);
            return 1;
        }
        const char *base = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
        write_file(json_dir, base, "", 0, (const unsigned char *)text, len);
        write_file(avro_dir, base, ".json", 'J', (const unsigned char *)text, len);
        json_t *cmd = bs_codec_body_to_command(body);
        if (!json_is_string(json_object_get(cmd, "command_id")))
            json_object_set_new(cmd, "command_id", json_string("seed"));
        static const struct {
            bs_framing f;
            const char *suffix;
        } frames[] = {{BS_FRAME_SINGLE_OBJECT, ".so"}, {BS_FRAME_CONFLUENT, ".cf"}};
        for (int k = 0; k < 2; k++) {
            unsigned char *buf;
            size_t blen;
            if (bs_codec_encode(cd, BS_SCHEMA_COMMAND, cmd, frames[k].f, &buf, &blen, &err) < 0) {
                fprintf(stderr, "%s: %s\n", argv[i], err.msg);
                return 1;
            }
            write_file(avro_dir, base, frames[k].suffix, 'B', buf, blen);
            free(buf);
        }
        json_decref(cmd);
        json_decref(body);
        free(text);
    }
    bs_codec_free(cd);
    return 0;
}
