#!/usr/bin/env bash
# librdkafka 2.0.2 (Debian) against the Kafka 4.x broker: with debug=feature,protocol, the
# client must find consumer groups, the idempotent producer and zstd/lz4 compression supported,
# really join the group, and a zstd-compressed command must make the round trip.
source "$(dirname "$0")/lib.sh"
export BULKSTATE_WORKER_LOG_LEVEL=debug BULKSTATE_KAFKA_DEBUG=feature,protocol,cgrp
export BULKSTATE_KAFKA_COMPRESSION_CODEC=zstd
start_worker || { finish; exit 1; }

printf '{"command_id": "features-1", "flow_runs": {"id": {"any_": []}}, "state": {"type": "CANCELLED"}}' >"$TMP/c.json"
send "$TMP/c.json"
check_eq "zstd-compressed command round trip" "$(json_field '(c["command_id"], c["matched"], c["error"])')" "('features-1', 0, None)"
for f in "ZSTD: Produce" "LZ4: " "IdempotentProducer: InitProducerId" "BrokerBalancedConsumer: JoinGroup" \
         "BrokerBalancedConsumer: SyncGroup" "BrokerBalancedConsumer: OffsetCommit" "MsgVer2: Fetch"; do
  check_match "worker sees feature '$f'" "$(grep -F "Feature $f" "$WORKER_LOG" | head -1)" "supported by broker"
done
check_match "the worker joined the group" "$(grep -F 'Received JoinGroupResponse' "$WORKER_LOG" | head -1)" "JoinGroupResponse \\(v[0-9]+"
check_match "the worker synced the group" "$(grep -F 'Received SyncGroupResponse' "$WORKER_LOG" | head -1)" "SyncGroupResponse \\(v[0-9]+"
check_match "the worker produced its replies" "$(grep -F 'Received ProduceResponse' "$WORKER_LOG" | head -1)" "ProduceResponse \\(v[0-9]+"
finish
