package group

// CommittedOffset is a group's committed offset for one partition, as the
// lag metrics read it.
type CommittedOffset struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
}

// AppendCommittedOffsets appends the committed offset of every partition
// of every group whose __consumer_offsets partition is loaded, in no
// particular order (sorting is left to the caller, outside the
// coordinator's lock). Only durable commits are listed: a commit appears
// once it is answered.
func (c *Coordinator) AppendCommittedOffsets(dst []CommittedOffset) []CommittedOffset {
	for _, g := range c.groups {
		for tp, v := range g.offsets {
			dst = append(dst, CommittedOffset{Group: g.id, Topic: tp.topic, Partition: tp.partition, Offset: v.offset})
		}
	}
	return dst
}
