#!/usr/bin/env bash
# A single-node Apache Kafka 4.x broker in KRaft mode on loopback, data and log under the build
# tree. Its jars come from Maven Central through Maven (scripts/kafka/pom.xml pins the
# version) and are cached in $BS_CACHE_DIR, so a second start needs no network.
#   scripts/kafka.sh start | stop | env
# `start` writes $BS_RUN_DIR/kafka.env (BULKSTATE_KAFKA_BOOTSTRAP_SERVERS).
# BS_KAFKA_INSTANCE names a second broker (its own directory, port and env file), and
# BS_KAFKA_AUTO_CREATE=true lets it create topics on first use (a test of that case).
# The broker's JVM collects with the serial collector (one small broker sharing two cores), or
# with G1 and a 20 ms pause goal when BS_KAFKA_GC=g1 (Kafka's own choice); its pauses go to
# $DIR/gc.log with wall-clock times.
source "$(dirname "$0")/lib.sh"

VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$BS_SOURCE_DIR/scripts/kafka/pom.xml")
JARS=$BS_CACHE_DIR/kafka-$VERSION/libs
INSTANCE=${BS_KAFKA_INSTANCE:-kafka}
DIR=$BS_RUN_DIR/$INSTANCE
LOGF=$DIR/broker.log
ENVF=$BS_RUN_DIR/$INSTANCE.env

fetch_jars() {
  if [ -f "$JARS/.complete" ]; then return 0; fi
  log "resolving Kafka $VERSION jars from Maven Central (first run only)"
  mkdir -p "$JARS"
  mvn -q -B -f "$BS_SOURCE_DIR/scripts/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$JARS" >"$BS_CACHE_DIR/mvn-kafka.log" 2>&1 \
    || { tail -30 "$BS_CACHE_DIR/mvn-kafka.log" >&2; die "could not resolve the Kafka jars"; }
  ls "$JARS"/kafka_2.13-"$VERSION".jar >/dev/null || die "kafka_2.13-$VERSION.jar missing after resolution"
  touch "$JARS/.complete"
}

java_cmd() {
  java -Xms128m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$BS_SOURCE_DIR/scripts/kafka/log4j2.properties" \
       -cp "$JARS/*" "$@"
}

ready() {
  kcat -b "127.0.0.1:$1" -L -m 2 -J 2>/dev/null | grep -q '"brokers":\[{'
}

launch() {
  local gc=-XX:+UseSerialGC
  [ "${BS_KAFKA_GC:-serial}" = g1 ] && gc="-XX:+UseG1GC -XX:MaxGCPauseMillis=20"
  nohup java -Xms256m -Xmx768m $gc -Xlog:gc:file="$DIR/gc.log":time -Djava.awt.headless=true \
       -Dlog4j2.configurationFile="$BS_SOURCE_DIR/scripts/kafka/log4j2.properties" \
       -cp "$JARS/*" kafka.Kafka "$DIR/server.properties" >>"$LOGF" 2>&1 &
  echo $! >"$DIR/pid"
}

# bounce: stop the running broker and start it again on the same ports and data (fault tests;
# the bench, to change BS_KAFKA_GC)
bounce() {
  fetch_jars
  [ -f "$ENVF" ] || die "kafka is not running"
  PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$ENVF")
  stop_pidfile "$DIR/pid" kafka 30
  launch
  wait_for 90 "kafka" ready "$PORT" || { tail -40 "$LOGF" >&2; die "kafka did not come back"; }
  log "kafka restarted on 127.0.0.1:$PORT"
}

start() {
  fetch_jars
  mkdir -p "$DIR"
  if [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null && [ -f "$ENVF" ]; then
    log "kafka already running ($(cat "$ENVF"))"
    return 0
  fi
  PORT=$(free_port "${BS_KAFKA_PORT:-19092}")
  CPORT=$(free_port $((PORT + 1)))
  rm -rf "$DIR/data"
  cat >"$DIR/server.properties" <<EOP
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=${BS_KAFKA_AUTO_CREATE:-false}
EOP
  java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)" \
      -c "$DIR/server.properties" >"$DIR/format.log" 2>&1 || { tail -20 "$DIR/format.log" >&2; die "could not format the KRaft log"; }
  launch
  if ! wait_for 90 "kafka" ready "$PORT"; then
    tail -40 "$LOGF" >&2
    stop
    die "kafka did not start"
  fi
  echo "export BULKSTATE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$PORT" >"$ENVF"
  log "kafka $VERSION (KRaft) ready on 127.0.0.1:$PORT"
}

stop() {
  stop_pidfile "$DIR/pid" kafka 30
  rm -f "$ENVF"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  bounce) bounce ;;
  env) cat "$ENVF" ;;
  *) echo "usage: $0 start|stop|bounce|env" >&2; exit 64 ;;
esac
