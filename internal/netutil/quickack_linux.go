//go:build linux

package netutil

import (
	"net"
	"syscall"
)

// setQuickAck asks the kernel to send any pending acknowledgement now and
// to leave delayed-acknowledgement mode. Linux resets the flag by itself,
// so it is set again after every read. Errors are ignored: the option only
// changes timing, never correctness.
func setQuickAck(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
