package suite

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-broker/sluice/bench"
	"github.com/sluice-broker/sluice/bench/peer"
	"github.com/sluice-broker/sluice/bench/report"
)

// perfRecordsMax caps a ProducerPerformance run (records), whatever rate
// the scenario reached.
const perfRecordsMax = 3_000_000

// perf runs Kafka's ProducerPerformance against every broker with the
// scenario's topic shape, record size, acks and topic configs. Its record
// count is sized from what our client achieved on that broker, so each run
// takes about PerfSeconds.
func (s *suiteRun) perf(sc *report.Scenario, spec *Spec) {
	w := sc.Workload
	seconds := s.opt.PerfSeconds
	if seconds <= 0 {
		seconds = 10
	}
	props := map[string]string{
		"acks":               w.Acks.String(),
		"linger.ms":          strconv.FormatInt(w.Linger.D().Milliseconds(), 10),
		"batch.size":         "262144",
		"compression.type":   w.Compression,
		"enable.idempotence": strconv.FormatBool(w.Idempotence),
	}
	for _, b := range s.opt.Brokers {
		if s.ctx.Err() != nil {
			return
		}
		run := &report.PerfRun{Broker: b.Name(), Durability: spec.Durability, Props: props}
		s.c.Perf = append(s.c.Perf, run)
		if !alive(b) {
			run.Result = &peer.PerfResult{Error: "the broker is not running"}
			continue
		}
		var rates []float64
		for _, r := range sc.Runs {
			if r.Broker.Name == b.Name() && r.Failed == "" && r.Produce != nil {
				rates = append(rates, r.Produce.RecordsPerSec)
			}
		}
		records := int64(100_000)
		if len(rates) > 0 {
			records = int64(medianOf(rates) * seconds)
		}
		records = min(max(records, 20_000), perfRecordsMax)
		topic := fmt.Sprintf("perf-%s-%d", spec.ID, time.Now().UnixNano()%1_000_000)
		run.Topic = topic
		if err := createTopic(s.ctx, b.Bootstrap(), topic, w, b.Name()); err != nil {
			run.Result = &peer.PerfResult{Error: "create topic: " + err.Error()}
			s.fail(sc, b.Name(), "ProducerPerformance: create topic: "+err.Error())
			continue
		}
		s.opt.Logf("scenario %s: ProducerPerformance against %s, %d records", sc.ID, b.Name(), records)
		s.logMark = -1
		if l, ok := b.(brokerLog); ok {
			s.logMark = l.LogSize()
		}
		// A generous bound: a broker that stalls must not stall the suite.
		ctx, cancel := context.WithTimeout(s.ctx, time.Duration(seconds*6+60)*time.Second)
		res := peer.RunProducerPerformance(ctx, peer.PerfConfig{
			ToolsDir: s.opt.PerfTools, Bootstrap: b.Bootstrap(), Topic: topic,
			NumRecords: records, RecordSize: int(w.RecordSize), Props: props,
		})
		cancel()
		run.Result = res
		if res.Error != "" {
			s.fail(sc, b.Name(), "ProducerPerformance: "+res.Error+"\n"+res.OutputTail)
		} else {
			s.opt.Logf("  %.0f records/s, %.1f MiB/s, p99 %.0f ms", res.RecordsPerSec, res.MiBPerSec, res.P99Ms)
		}
		s.deleteTopics(b, []string{topic})
	}
}

func createTopic(ctx context.Context, bootstrap, topic string, w bench.Workload, broker string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		return err
	}
	defer cl.Close()
	cfg := map[string]*string{}
	for k, v := range w.TopicConfigFor(broker) {
		cfg[k] = kadm.StringPtr(v)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(w.Partitions), int16(w.Replication), cfg, topic)
	if err != nil {
		return err
	}
	return resp.Err
}
