//go:build !linux

package testenv

import "net"

// tcpPeerGone cannot see the TCP state off Linux; a frozen client's close
// is then seen only when it unfreezes.
func tcpPeerGone(net.Conn) (bool, string) { return false, "unknown" }
