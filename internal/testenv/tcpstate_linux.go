package testenv

import (
	"net"
	"syscall"
	"unsafe"
)

// tcpStates names the Linux TCP states (include/net/tcp_states.h).
var tcpStates = map[uint8]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}

// tcpPeerGone reports whether the kernel saw the peer end a TCP
// connection (FIN or RST) even though nobody read the socket: the state
// left ESTABLISHED.
func tcpPeerGone(c net.Conn) (bool, string) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false, "not TCP"
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false, err.Error()
	}
	var info syscall.TCPInfo
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(info))
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&l)), 0)
	}); err != nil || errno != 0 {
		return false, "unknown"
	}
	name := tcpStates[info.State]
	return info.State != 1, name
}
