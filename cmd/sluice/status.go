package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/replicate"
)

// statusMain prints what GET /v1/status on a node's --http listener says.
func statusMain(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	addr := fs.String("http", "127.0.0.1:9645", "the node's admin listener (serve --http)")
	asJSON := fs.Bool("json", false, "print the JSON as served")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + *addr + "/v1/status")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v1/status: %s: %s", resp.Status, body)
	}
	if *asJSON {
		_, err := os.Stdout.Write(body)
		return err
	}
	var st engine.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return err
	}
	fmt.Printf("role %s, node %d, leader epoch %d, cluster %s\n", st.Role, st.NodeID, st.LeaderEpoch, st.ClusterID)
	if st.Peer != nil {
		fmt.Printf("peer node %d at %s\n", st.Peer.NodeID, st.Peer.Address)
	} else {
		fmt.Println("peer none (no standby has registered)")
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPARTITION\tIN SYNC\tLOG END\tHIGH WATERMARK\tLAG RECORDS\tLAG SECONDS")
	for _, p := range st.Partitions {
		fmt.Fprintf(w, "%s\t%d\t%v\t%d\t%d\t%d\t%.1f\n", p.Topic, p.Partition, p.InSync, p.LogEndOffset, p.HighWatermark, p.LagRecords, p.LagSeconds)
	}
	return w.Flush()
}

// roleMain is sluice promote and sluice demote.
func roleMain(what string, args []string) error {
	fs := flag.NewFlagSet(what, flag.ContinueOnError)
	addr := fs.String("http", "127.0.0.1:9645", "the node's admin listener (serve --http)")
	force := false
	if what == "promote" {
		fs.BoolVar(&force, "force", false, "promote even while the primary still answers as primary (it must be stopped or cut off: two primaries would take writes)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	r, err := replicate.RequestRoleChange(*addr, what, force)
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, *addr, err)
	}
	switch what {
	case "promote":
		fmt.Printf("%s is the primary at leader epoch %d\n", *addr, r.LeaderEpoch)
	default:
		fmt.Printf("%s handed the primary role over (new leader epoch %d) and is now a %s\n", *addr, r.LeaderEpoch, r.Role)
	}
	return nil
}
