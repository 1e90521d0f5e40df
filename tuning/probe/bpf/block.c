// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Block I/O latency, issue to completion, per operation, for the disks that
 * hold the data directory (or every disk when block_filter is 0).
 * Requests are matched by (device, sector), as the tracepoints carry no
 * request pointer.
 */
#include "common.h"

enum { OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_OTHER, OP_COUNT };

struct trace_event_raw_block_rq {
	struct trace_entry ent;
	__u32 dev;
	__u64 sector;
	unsigned int nr_sector;
	unsigned int bytes;
	char rwbs[10];
} __attribute__((preserve_access_index));

struct trace_event_raw_block_rq_completion {
	struct trace_entry ent;
	__u32 dev;
	__u64 sector;
	unsigned int nr_sector;
	int error;
	char rwbs[10];
} __attribute__((preserve_access_index));

struct rq_key {
	__u32 dev;
	__u32 pad;
	__u64 sector;
};

struct rq_start {
	__u64 ts;
	__u32 op;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct rq_key);
	__type(value, struct rq_start);
} block_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OP_COUNT);
	__type(key, __u32);
	__type(value, struct hist);
} block_hist SEC(".maps");

/* Kernel dev_t values (major << 20 | minor) of the disks to watch. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} block_devs SEC(".maps");

volatile const __u32 block_filter = 0;

/*
 * op_of reads the rwbs string (blk_fill_rwbs): an optional F for a
 * preflush, then the operation: R, W, D (DE: secure erase), F (a flush
 * request of its own) or N.
 */
static __always_inline __u32 op_of(char c0, char c1)
{
	char c = c0;
	if (c0 == 'F') {
		if (c1 != 'R' && c1 != 'W' && c1 != 'D')
			return OP_FLUSH;
		c = c1;
	}
	switch (c) {
	case 'R':
		return OP_READ;
	case 'W':
		return OP_WRITE;
	case 'D':
		return OP_DISCARD;
	}
	return OP_OTHER;
}

SEC("tracepoint/block/block_rq_issue")
int block_rq_issue(struct trace_event_raw_block_rq *ctx)
{
	__u32 dev = ctx->dev;
	if (block_filter && !bpf_map_lookup_elem(&block_devs, &dev))
		return 0;
	struct rq_key key = { .dev = dev, .sector = ctx->sector };
	struct rq_start start = {
		.ts = bpf_ktime_get_ns(),
		.op = op_of(ctx->rwbs[0], ctx->rwbs[1]),
	};
	bpf_map_update_elem(&block_start, &key, &start, BPF_ANY);
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int block_rq_complete(struct trace_event_raw_block_rq_completion *ctx)
{
	struct rq_key key = { .dev = ctx->dev, .sector = ctx->sector };
	struct rq_start *start = bpf_map_lookup_elem(&block_start, &key);
	if (!start)
		return 0;
	__u64 delta = bpf_ktime_get_ns() - start->ts;
	__u32 op = start->op;
	bpf_map_delete_elem(&block_start, &key);
	if (op >= OP_COUNT)
		return 0;
	struct hist *h = bpf_map_lookup_elem(&block_hist, &op);
	if (h)
		hist_add(h, delta);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
