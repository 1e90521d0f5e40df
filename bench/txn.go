package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The transactions scenario: producers, each with its own transactional
// id, write transactions of a fixed number of records back to back and
// commit each; it measures committed records a second and the EndTxn
// (commit) latency, the two numbers the transaction coordinator and the
// markers decide.

// TxnConfig is one transactions run.
type TxnConfig struct {
	Bootstrap   []string
	Topic       string
	Partitions  int
	Producers   int
	TxnRecords  int // records per transaction
	RecordBytes int
	Duration    time.Duration
	Warmup      time.Duration
}

// TxnResult is what a transactions run measured (after the warm-up).
type TxnResult struct {
	Transactions int64       `json:"transactions"`
	Records      int64       `json:"records"`
	Seconds      float64     `json:"seconds"`
	RecordsPerS  float64     `json:"records_per_s"`
	TxnPerS      float64     `json:"transactions_per_s"`
	Commit       Percentiles `json:"commit_latency"`      // EndTxn: commit asked to commit answered
	Transaction  Percentiles `json:"transaction_latency"` // begin to commit answered
	Aborted      int64       `json:"failed_transactions"`
}

// RunTxn runs the scenario on a topic it creates and deletes.
func RunTxn(ctx context.Context, cfg TxnConfig) (*TxnResult, error) {
	if cfg.Producers <= 0 || cfg.TxnRecords <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("txn: need producers, records per transaction and a duration")
	}
	adminCl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Bootstrap...))
	if err != nil {
		return nil, err
	}
	defer adminCl.Close()
	adm := kadm.NewClient(adminCl)
	if _, err := adm.CreateTopic(ctx, int32(cfg.Partitions), -1, nil, cfg.Topic); err != nil {
		return nil, fmt.Errorf("creating %s: %w", cfg.Topic, err)
	}
	defer adm.DeleteTopics(context.Background(), cfg.Topic)

	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	var mu sync.Mutex
	commit, whole := NewHistogram(), NewHistogram()
	var txns, recs, failed atomic.Int64
	errs := make(chan error, cfg.Producers)
	var wg sync.WaitGroup
	for i := range cfg.Producers {
		cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Bootstrap...), kgo.ClientID("sluice-bench-txn"),
			kgo.TransactionalID(fmt.Sprintf("%s-%d", cfg.Topic, i)), kgo.DefaultProduceTopic(cfg.Topic),
			kgo.ProducerLinger(0), kgo.RecordDeliveryTimeout(30*time.Second))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		wg.Add(1)
		go func(cl *kgo.Client) {
			defer wg.Done()
			value := make([]byte, cfg.RecordBytes)
			fillRandom(value, uint64(i))
			batch := make([]*kgo.Record, cfg.TxnRecords)
			for time.Now().Before(end) && ctx.Err() == nil {
				began := time.Now()
				if err := cl.BeginTransaction(); err != nil {
					errs <- err
					return
				}
				for j := range batch {
					batch[j] = &kgo.Record{Value: value}
				}
				if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
					failed.Add(1)
					cl.EndTransaction(ctx, kgo.TryAbort)
					continue
				}
				asked := time.Now()
				if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
					errs <- fmt.Errorf("commit: %w", err)
					return
				}
				done := time.Now()
				if began.Before(measureFrom) || done.After(end) {
					continue
				}
				txns.Add(1)
				recs.Add(int64(cfg.TxnRecords))
				mu.Lock()
				commit.Record(done.Sub(asked))
				whole.Record(done.Sub(began))
				mu.Unlock()
			}
		}(cl)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	secs := cfg.Duration.Seconds()
	return &TxnResult{
		Transactions: txns.Load(), Records: recs.Load(), Seconds: secs,
		RecordsPerS: float64(recs.Load()) / secs, TxnPerS: float64(txns.Load()) / secs,
		Commit: commit.Summary(), Transaction: whole.Summary(), Aborted: failed.Load(),
	}, nil
}

// Table is the result as a Markdown table.
func (r *TxnResult) Table() string {
	rows := [][2]string{
		{"committed transactions", fmt.Sprint(r.Transactions)},
		{"committed records/s", fmt.Sprintf("%.0f", r.RecordsPerS)},
		{"transactions/s", fmt.Sprintf("%.1f", r.TxnPerS)},
		{"commit (EndTxn) p50 / p99 / max", fmt.Sprintf("%.2f / %.2f / %.2f ms", r.Commit.P50, r.Commit.P99, r.Commit.Max)},
		{"transaction (begin to commit) p50 / p99", fmt.Sprintf("%.2f / %.2f ms", r.Transaction.P50, r.Transaction.P99)},
		{"transactions that failed to produce", fmt.Sprint(r.Aborted)},
	}
	out := "| measure | value |\n| --- | --- |\n"
	for _, row := range rows {
		out += "| " + row[0] + " | " + row[1] + " |\n"
	}
	return out
}
