//go:build linux

package uring

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkNopRoundTrip: prepare, submit, wait and reap one NOP.
func BenchmarkNopRoundTrip(b *testing.B) {
	r := newTestRing(b, Params{Entries: 64})
	cqes := make([]CQE, 0, 128)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.PrepNop(uint64(i))
		if _, err := r.SubmitAndWait(1); err != nil {
			b.Fatal(err)
		}
		if cqes = r.Reap(cqes[:0]); len(cqes) != 1 {
			b.Fatalf("reaped %d", len(cqes))
		}
	}
}

// BenchmarkWriteFixed4K: one 4 KiB WRITE_FIXED round trip at a time,
// cycling over 16 MiB of a preallocated file, buffered and O_DIRECT.
func BenchmarkWriteFixed4K(b *testing.B) {
	for _, mode := range []struct {
		name  string
		flags int
	}{{"buffered", 0}, {"direct", unix.O_DIRECT}} {
		b.Run(mode.name, func(b *testing.B) {
			r := newTestRing(b, Params{Entries: 64})
			slab := newTestSlab(b, 4096, 1)
			if err := r.RegisterBuffers(slab); err != nil {
				b.Fatal(err)
			}
			path := filepath.Join(os.TempDir(), "uring-bench-"+time.Now().Format("150405.000000000"))
			fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|mode.flags, 0o600)
			if errors.Is(err, unix.EINVAL) {
				b.Skip("no O_DIRECT here")
			}
			if err != nil {
				b.Fatal(err)
			}
			defer os.Remove(path)
			defer unix.Close(fd)
			const span = 16 << 20
			if err := unix.Fallocate(fd, 0, 0, span); err != nil {
				b.Fatal(err)
			}
			buf := slab.Buf(0)
			cqes := make([]CQE, 0, 128)
			b.SetBytes(4096)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.PrepWriteFixed(int32(fd), buf, 0, uint64(i*4096)%span, uint64(i))
				if _, err := r.SubmitAndWait(1); err != nil {
					b.Fatal(err)
				}
				cqes = r.Reap(cqes[:0])
				for len(cqes) == 0 {
					if _, err := r.SubmitAndWait(1); err != nil {
						b.Fatal(err)
					}
					cqes = r.Reap(cqes)
				}
				if cqes[0].Res != 4096 {
					b.Fatalf("write: %d", cqes[0].Res)
				}
			}
		})
	}
}
