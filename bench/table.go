package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints a result as an aligned table for a terminal.
func WriteTable(out io.Writer, r *Result) {
	fmt.Fprintf(out, "\n%s on %s (%s)\n", r.Workload.Name, r.Broker.Name, r.Broker.Bootstrap)
	fmt.Fprintf(out, "  %s\n", r.Workload.Summary())
	fmt.Fprintf(out, "  topic %s, warm-up %.0fs, measured %.1fs, host %s (%d CPUs)\n\n", r.Topic, r.WarmupSeconds, r.MeasuredSeconds, r.Host, r.CPUs)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\trecords\trecords/s\tMiB/s\terrors\t")
	for _, row := range []struct {
		name string
		t    *Throughput
	}{{"produce", r.Produce}, {"consume", r.Consume}} {
		if row.t != nil {
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%d\t\n", row.name, row.t.Records, row.t.RecordsPerSec, row.t.MiBPerSec, row.t.Errors)
		}
	}
	tw.Flush()
	if rows := latencyRows(r); len(rows) > 0 {
		fmt.Fprintln(out)
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "latency\tcount\tp50\tp95\tp99\tp99.9\tp99.99\tmax\t")
		for _, row := range rows {
			s := row.h.Summary()
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.name, s.Count, fmtMs(s.P50), fmtMs(s.P95), fmtMs(s.P99), fmtMs(s.P999), fmtMs(s.P9999), fmtMs(s.Max))
		}
		tw.Flush()
	}
	rs := r.Resources
	fmt.Fprintln(out)
	if rs.BrokerSampled {
		fmt.Fprintf(out, "  broker pid %d: cpu avg %.2f max %.2f cores, rss max %d MiB\n", rs.BrokerPID, rs.BrokerCPUAvg, rs.BrokerCPUMax, rs.BrokerRSSMax>>20)
	} else if rs.SampleError != "" {
		fmt.Fprintf(out, "  broker not sampled: %s\n", rs.SampleError)
	}
	steal := ""
	if rs.StealCPUAvg >= 0.01 {
		steal = fmt.Sprintf(" (%.2f of it stolen by the hypervisor)", rs.StealCPUAvg)
	}
	fmt.Fprintf(out, "  client cpu avg %.2f cores, other processes %.2f cores%s, machine %.0f%% busy\n", rs.ClientCPUAvg, rs.OtherCPUAvg, steal, 100*rs.MachineBusyAvg)
	if c := r.Check; c != nil {
		status := "ok"
		if !c.OK {
			status = "FAILED: " + c.Detail
		}
		fmt.Fprintf(out, "  check: acknowledged %d, consumed %d, expected %d: %s\n", c.Acknowledged, c.Consumed, c.Expected, status)
	}
	if t := r.Produce; t != nil && len(t.PerPartition) > 1 && r.Workload.Keys != KeysNone {
		fmt.Fprintf(out, "  records per partition: %s\n", joinInts(t.PerPartition))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(out, "  note: %s\n", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(out, "  error (%s) ×%d: %s\n", e.Where, e.Count, e.Message)
	}
	if r.Failed != "" {
		fmt.Fprintf(out, "  FAILED: %s\n", r.Failed)
	}
}

type latencyRow struct {
	name string
	h    *Histogram
}

func latencyRows(r *Result) []latencyRow {
	var rows []latencyRow
	if r.ProduceLatency != nil && r.ProduceLatency.Count() > 0 {
		rows = append(rows, latencyRow{"produce ack", r.ProduceLatency})
	}
	if r.EndToEndLatency != nil && r.EndToEndLatency.Count() > 0 {
		rows = append(rows, latencyRow{"end-to-end", r.EndToEndLatency})
	}
	return rows
}

func joinInts(v []int64) string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, " ")
}
