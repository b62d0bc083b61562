/* kafka_int: what the two Kafka files share. Not for use outside src/io/kafka*.c. */
#ifndef BS_KAFKA_INT_H
#define BS_KAFKA_INT_H

#include <librdkafka/rdkafka.h>

#include "kafka.h"

/* The value of key in props (the last entry wins), or NULL. */
const char *bs_kafka_prop(const bs_kafka_props *props, const char *key);
/* A librdkafka configuration: bulkstate's defaults, then props (consumer-only keys left out of a
 * producer's), then what bulkstate owns. NULL and err (fatal) on a bad property. */
rd_kafka_conf_t *bs_kafka_conf(const bs_kafka_props *props, bool consumer, bs_err *err);

#endif
