package testenv

import (
	"fmt"
	"net"
)

// LoopbackAlias spells the loopback address addr ("127.0.0.1:PORT") in
// its i-th way: 0 as given, 1 as localhost, 2 as the IPv4-mapped IPv6
// address. All reach the same listener. Configurations refuse one
// address for hosts of different tenants or environments, so a test that
// puts a test and a production host on one sshd names it differently for
// each.
func LoopbackAlias(addr string, i int) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		panic(fmt.Sprintf("LoopbackAlias(%q): %v", addr, err))
	}
	switch i {
	case 0:
		return addr
	case 1:
		return net.JoinHostPort("localhost", port)
	case 2:
		return net.JoinHostPort("::ffff:127.0.0.1", port)
	}
	panic(fmt.Sprintf("LoopbackAlias: no spelling %d", i))
}
