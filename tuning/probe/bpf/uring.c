// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * io_uring request latency, submission to completion, per opcode, for one
 * process (uring_tgid) or all. Requests are matched by their kernel
 * address, which both tracepoints carry.
 */
#include "common.h"

#define OPCODES 64

struct trace_event_raw_io_uring_submit_req {
	struct trace_entry ent;
	void *ctx;
	void *req;
	__u64 user_data;
	__u8 opcode;
} __attribute__((preserve_access_index));

struct trace_event_raw_io_uring_complete {
	struct trace_entry ent;
	void *ctx;
	void *req;
	__u64 user_data;
	int res;
} __attribute__((preserve_access_index));

struct req_start {
	__u64 ts;
	__u32 opcode;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct req_start);
} uring_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OPCODES);
	__type(key, __u32);
	__type(value, struct hist);
} uring_hist SEC(".maps");

volatile const __u32 uring_tgid = 0;

SEC("tracepoint/io_uring/io_uring_submit_req")
int io_uring_submit_req(struct trace_event_raw_io_uring_submit_req *ctx)
{
	if (uring_tgid && (bpf_get_current_pid_tgid() >> 32) != uring_tgid)
		return 0;
	__u64 req = (__u64)ctx->req;
	struct req_start start = { .ts = bpf_ktime_get_ns(), .opcode = ctx->opcode };
	bpf_map_update_elem(&uring_start, &req, &start, BPF_ANY);
	return 0;
}

SEC("tracepoint/io_uring/io_uring_complete")
int io_uring_complete(struct trace_event_raw_io_uring_complete *ctx)
{
	__u64 req = (__u64)ctx->req;
	struct req_start *start = bpf_map_lookup_elem(&uring_start, &req);
	if (!start)
		return 0;
	__u64 delta = bpf_ktime_get_ns() - start->ts;
	__u32 opcode = start->opcode;
	bpf_map_delete_elem(&uring_start, &req);
	if (opcode >= OPCODES)
		return 0;
	struct hist *h = bpf_map_lookup_elem(&uring_hist, &opcode);
	if (h)
		hist_add(h, delta);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
