package probe

// The programs in bpf/ are compiled to BPF objects for both byte orders and
// wrapped in Go by bpf2go; the objects and the Go files are checked in, so a
// build needs no clang. `make generate-bpf` reruns this (clang, llvm and
// libbpf-dev).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -no-global-types block bpf/block.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -no-global-types uring bpf/uring.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -no-global-types pagecache bpf/pagecache.c
