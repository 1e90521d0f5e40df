package api

import (
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// DescribeLogDirs (kafka-log-dirs --describe): sluice has one log
// directory, --data-dir. v1 is Kafka 4's minimum.
var _ = register(&handler{key: 35, min: 1, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.describeLogDirs(body.(*msg.DescribeLogDirsRequest)))
}})

func (h *Handler) describeLogDirs(req *msg.DescribeLogDirsRequest) *msg.DescribeLogDirsResponse {
	var resp msg.DescribeLogDirsResponse
	resp.Default()
	dir, err := filepath.Abs(h.b.Cfg.DataDir)
	if err != nil {
		dir = h.b.Cfg.DataDir
	}
	res := msg.DescribeLogDirsResponseDescribeLogDirsResult{LogDir: dir, TotalBytes: -1, UsableBytes: -1}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		res.TotalBytes = int64(st.Blocks) * st.Frsize // block counts are in fragment units
		res.UsableBytes = int64(st.Bavail) * st.Frsize
	}
	// Which partitions: all (Topics null), or those named.
	var want map[string]map[int32]bool
	if req.Topics != nil {
		want = map[string]map[int32]bool{}
		for _, t := range req.Topics {
			if want[t.Topic] == nil {
				want[t.Topic] = map[int32]bool{}
			}
			for _, p := range t.Partitions {
				want[t.Topic][p] = true
			}
		}
	}
	byTopic := map[string]int{}
	for _, sh := range h.b.Shards {
		_, parts := sh.Snapshot()
		for _, p := range parts {
			if !visibleLogDir(p.Key) || want != nil && !want[p.Key.Topic][p.Key.Partition] {
				continue
			}
			i, ok := byTopic[p.Key.Topic]
			if !ok {
				i = len(res.Topics)
				byTopic[p.Key.Topic] = i
				res.Topics = append(res.Topics, msg.DescribeLogDirsResponseDescribeLogDirsTopic{Name: p.Key.Topic})
			}
			res.Topics[i].Partitions = append(res.Topics[i].Partitions, msg.DescribeLogDirsResponseDescribeLogDirsPartition{
				PartitionIndex: p.Key.Partition, PartitionSize: p.SizeBytes,
			})
		}
	}
	if res.TotalBytes < 0 {
		res.ErrorCode = int16(kerr.KafkaStorageError) // the directory cannot be read
	}
	resp.Results = []msg.DescribeLogDirsResponseDescribeLogDirsResult{res}
	return &resp
}

// visibleLogDir: the metadata log is the controller's in Kafka, not a
// broker's log directory entry.
func visibleLogDir(k shard.Key) bool { return k.Topic != engine.MetadataTopic }
