// Package bench is sluice's benchmark harness: it drives any broker that
// speaks the Kafka protocol (sluice, Apache Kafka, anything else) with
// franz-go clients and measures what a user of that broker would see.
//
// A run is described by a Workload (workload.go): topic shape, record size and
// key distribution, producers and consumers, client settings, and either a
// target rate or "as fast as it goes". Run (run.go) executes one of three
// modes:
//
//   - produce: producers only; latency is acknowledgement time minus the
//     record's intended send time.
//   - consume: catch-up reads of data already in a topic (optionally written
//     first, unmeasured); throughput only.
//   - e2e: producers and consumers together; latency is the consumer's
//     arrival time minus the send time embedded in the record.
//
// Open loop. With a target rate, every record has an intended send time on a
// fixed schedule (start + i/rate), and its latency is measured from that
// intended time, not from when the client got round to sending it. A stalled
// broker therefore shows up as latency for every record that should have been
// sent during the stall; a closed-loop client would quietly send fewer records
// and hide it (coordinated omission). In max-rate mode there is no schedule and
// latency is measured from the Produce call, which includes time spent waiting
// in the client's buffer.
//
// Record layout. Each value starts with a 16-byte header the consumer reads
// back (records shorter than that carry only the record timestamp, in ms):
//
//	0               8               16
//	+---------------+---------------+------------------------+
//	| send time ns  | producer<<40  |  pseudo-random payload |
//	| (unix, BE)    |  | sequence   |                        |
//	+---------------+---------------+------------------------+
//
// Latencies go into HDR histograms (histogram.go) with microsecond resolution
// and three significant digits; every second the harness also closes an
// interval (throughput, interval percentiles) and samples the broker's CPU and
// resident memory from /proc and the client's own CPU (resources.go), so a run
// where the client, not the broker, was the bottleneck says so.
//
// The sub-packages build on this: report renders results as terminal tables,
// Markdown and HTML with SVG plots; peer starts brokers to compare (sluice and
// Apache Kafka) and runs Kafka's own ProducerPerformance; limits measures the
// machine (disk, loopback TCP, memory copy); suite runs the standard
// comparison, interleaving brokers A B A B.
package bench
