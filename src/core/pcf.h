/* pcf: Avro's Parsing Canonical Form and its CRC-64-AVRO (Rabin) fingerprint, which avro-c
 * lacks; single-object encoding (C3 01 + fingerprint) needs both. Pure. */
#ifndef BS_PCF_H
#define BS_PCF_H

#include <stddef.h>
#include <stdint.h>

/* Canonical form of the schema given as JSON text; malloc'd, NULL if the text is not a schema
 * (the caller frees). */
char *bs_pcf(const char *schema_json);
/* CRC-64-AVRO of len bytes. */
uint64_t bs_crc64_avro(const void *buf, size_t len);
/* Fingerprint of the canonical form of schema_json; 0 when it does not parse. */
uint64_t bs_schema_fingerprint(const char *schema_json);

#endif
