package netio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// sendFile writes length bytes of the file fd at offset off to the socket
// with sendfile(2) at an explicit offset (never the file's shared offset, so
// concurrent readers of one segment are safe). It runs inside the socket's
// RawConn.Write callback, so EAGAIN parks the goroutine on the netpoller.
func sendFile(nc net.Conn, fd int, off int64, length int) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return fmt.Errorf("sendfile: %T is not a syscall.Conn", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	remaining := length
	var serr error
	werr := rc.Write(func(sock uintptr) bool {
		for remaining > 0 {
			n, err := unix.Sendfile(int(sock), fd, &off, remaining)
			if n > 0 {
				remaining -= n
			}
			switch {
			case err == unix.EAGAIN:
				return false // wait for the socket to drain
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return true
			case n == 0:
				// The file is shorter than the range: never send a torn frame.
				serr = io.ErrUnexpectedEOF
				return true
			}
		}
		return true
	})
	if werr != nil {
		return werr
	}
	if serr != nil {
		return errors.Join(errors.New("sendfile"), serr)
	}
	return nil
}
