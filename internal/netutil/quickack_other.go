//go:build !linux

package netutil

import "net"

// setQuickAck is a no-op where TCP_QUICKACK does not exist.
func setQuickAck(*net.TCPConn) {}
