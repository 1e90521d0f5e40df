// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Page-cache misses on reads of the data directory's file system.
 *
 * A read (or a fault) that finds its page missing runs synchronous
 * readahead: readahead:page_cache_sync_ra is the miss, its req_count the
 * pages the read wanted. Pages the kernel then inserts
 * (filemap:mm_filemap_add_to_page_cache) are attributed to the read while
 * the same thread is inside that read of that inode: from a sync or async
 * readahead until filemap:mm_filemap_get_pages, which fires when the read
 * has its pages. Everything else inserted (appends) is counted apart.
 */
#include "common.h"

enum {
	PC_READ_MISSES,      /* reads that missed */
	PC_PAGES_READ,       /* pages inserted for reads (misses plus readahead) */
	PC_PAGES_OTHER,      /* pages inserted otherwise: writes, appends */
	PC_COUNTERS,
};

struct trace_event_raw_page_cache_ra_op {
	struct trace_entry ent;
	unsigned long i_ino;
	__u32 s_dev;
	unsigned long req_count;
} __attribute__((preserve_access_index));

struct trace_event_raw_mm_filemap_op_page_cache {
	struct trace_entry ent;
	unsigned long i_ino;
	__u32 s_dev;
	unsigned char order;
} __attribute__((preserve_access_index));

struct trace_event_raw_mm_filemap_op_page_cache_range {
	struct trace_entry ent;
	unsigned long i_ino;
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PC_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} pc_counters SEC(".maps");

/* Size of each read miss in pages (req_count). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} pc_miss_hist SEC(".maps");

/* Thread id -> inode whose read is inserting pages. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} pc_reading SEC(".maps");

/* Kernel dev_t (major << 20 | minor) of the data directory's file system. */
volatile const __u32 pc_sdev = 0;

static __always_inline void count(__u32 which, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&pc_counters, &which);
	if (c)
		__sync_fetch_and_add(c, n);
}

static __always_inline int start_read(__u32 s_dev, __u64 ino)
{
	if (pc_sdev && s_dev != pc_sdev)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&pc_reading, &tid, &ino, BPF_ANY);
	return 1;
}

SEC("tracepoint/readahead/page_cache_sync_ra")
int page_cache_sync_ra(struct trace_event_raw_page_cache_ra_op *ctx)
{
	if (!start_read(ctx->s_dev, ctx->i_ino))
		return 0;
	count(PC_READ_MISSES, 1);
	__u32 zero = 0;
	struct hist *h = bpf_map_lookup_elem(&pc_miss_hist, &zero);
	if (h)
		hist_add(h, ctx->req_count);
	return 0;
}

SEC("tracepoint/readahead/page_cache_async_ra")
int page_cache_async_ra(struct trace_event_raw_page_cache_ra_op *ctx)
{
	start_read(ctx->s_dev, ctx->i_ino);
	return 0;
}

SEC("tracepoint/filemap/mm_filemap_add_to_page_cache")
int mm_filemap_add_to_page_cache(struct trace_event_raw_mm_filemap_op_page_cache *ctx)
{
	if (pc_sdev && ctx->s_dev != pc_sdev)
		return 0;
	__u64 pages = 1ULL << (ctx->order & 31);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *ino = bpf_map_lookup_elem(&pc_reading, &tid);
	if (ino && *ino == ctx->i_ino)
		count(PC_PAGES_READ, pages);
	else
		count(PC_PAGES_OTHER, pages);
	return 0;
}

SEC("tracepoint/filemap/mm_filemap_get_pages")
int mm_filemap_get_pages(struct trace_event_raw_mm_filemap_op_page_cache_range *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&pc_reading, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
