// Package e2e is sluice's end-to-end suite: the real bin/sluice binary driven
// by real Kafka clients (franz-go, kcat/librdkafka, the Java client,
// confluent-kafka for Python) and by hand-made bytes on raw TCP.
//
// The expectations are Apache Kafka's behaviour; the suite is validated
// against a real Kafka broker by pointing it at one:
//
//	scripts/kafka-peer start 19092 /tmp/kafka-peer
//	SLUICE_E2E_BOOTSTRAP=127.0.0.1:19092 go test ./test/e2e/
//	scripts/kafka-peer stop
//
// Without SLUICE_E2E_BOOTSTRAP the suite starts bin/sluice itself (SLUICE_BIN
// overrides the path). Tests that must kill or restart the broker skip against
// an external one. A client tool that is not installed skips its test, unless
// CI=true, where it fails: .ci/install-deps must have provided it.
//
// Environment:
//
//	SLUICE_E2E_BOOTSTRAP  host:port of an external broker to test instead of bin/sluice
//	SLUICE_BIN            the sluice binary (default <repo>/bin/sluice; relative to the repo root)
//	SLUICE_E2E_SEED       seed for the randomized data (default: time based, always logged)
//	SLUICE_E2E_RECORDS    records per codec in the client scenarios (default 10000)
//	SLUICE_CACHE          cache of client jars (default $HOME/.cache/sluice)
//	SLUICE_JAVA_LIBS      the Kafka Java client jars (default $SLUICE_CACHE/java)
//	SLUICE_PYTHON         the Python with confluent-kafka (default python3)
//	SLUICE_KCAT           the kcat binary (default: kcat or kafkacat on PATH)
//	SLUICE_E2E_KEEP       if set, keep the temporary directory (data, logs) of a failed run
package e2e
