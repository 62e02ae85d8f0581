package relay

import (
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// Stream relays one forwarded connection (a direct-tcpip channel) between
// the client and the target until both directions are done, then closes
// both channels. Unlike a session it has no requests and no exit status:
// each direction ends with an EOF passed on to the other side. Counts.In
// is client→target, Counts.Out target→client; taps.Err is not used.
// downReqs are the client channel's requests: none is granted, and their
// end (the client closed the channel, or its connection ended) closes the
// target's channel too, so a vanished client cannot leave it open.
func Stream(down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, taps Taps) Result {
	go func() {
		ssh.DiscardRequests(downReqs)
		_ = up.Close()
	}()
	var in, out atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		copyTap(up, down, taps.In, &in)
		_ = up.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		copyTap(down, up, taps.Out, &out)
		_ = down.CloseWrite()
	}()
	wg.Wait()
	_ = down.Close()
	_ = up.Close()
	return Result{Counts: Counts{In: in.Load(), Out: out.Load()}}
}
