// Package relay copies one SSH session channel between a client and a
// target, keeping the end of a session exactly as the target sent it.
//
// Two rules from peers' bugs shape it (see docs/STANDARDS.md): every byte of
// target output reaches the client before the exit status, and the client
// then sees exit-status (or exit-signal), CHANNEL_EOF and CHANNEL_CLOSE in
// that order (RFC 4254 §6.10). Data is copied through the channels' own
// flow-control windows, so nothing is buffered without bound.
package relay

import (
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// Counts are the bytes that passed a relay.
type Counts struct {
	In, Out, Err int64 // client→target, target stdout→client, target stderr→client
}

// Result describes how a relayed session ended.
type Result struct {
	Counts
	// ExitStatus is set when the target reported one.
	ExitStatus *uint32
	// ExitSignal is the signal name when the target reported one.
	ExitSignal string
}

// Taps observe the streams, for recording. They must not block for long:
// they run in the copy path. Nil taps are skipped.
type Taps struct {
	In, Out, Err io.Writer
}

// clientRequests are the session requests a client may send after the
// session has started; anything else is refused.
var clientRequests = map[string]bool{
	"window-change": true, "signal": true, "break": true,
}

// Session relays a started session until both sides are done, then closes
// both channels. down/downReqs face the client, up/upReqs face the target.
func Session(down ssh.Channel, downReqs <-chan *ssh.Request, up ssh.Channel, upReqs <-chan *ssh.Request, taps Taps) Result {
	var res Result
	var in, out, errb atomic.Int64
	var outputs sync.WaitGroup
	outputs.Add(2)
	go func() {
		defer outputs.Done()
		copyTap(down, up, taps.Out, &out)
	}()
	go func() {
		defer outputs.Done()
		copyTap(down.Stderr(), up.Stderr(), taps.Err, &errb)
	}()
	go func() {
		copyTap(up, down, taps.In, &in)
		_ = up.CloseWrite()
	}()

	// The exit status is held back until all output is through.
	var exitReqs []*ssh.Request
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		for r := range upReqs {
			switch r.Type {
			case "exit-status":
				if len(r.Payload) == 4 {
					v := uint32(r.Payload[0])<<24 | uint32(r.Payload[1])<<16 | uint32(r.Payload[2])<<8 | uint32(r.Payload[3])
					res.ExitStatus = &v
				}
				exitReqs = append(exitReqs, r)
			case "exit-signal":
				res.ExitSignal = signalName(r.Payload)
				exitReqs = append(exitReqs, r)
			default:
				// keepalive@openssh.com and other probes: answer as a
				// client would, never pass them on.
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
			}
		}
	}()
	go func() {
		for r := range downReqs {
			if !clientRequests[r.Type] {
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
				continue
			}
			ok, err := up.SendRequest(r.Type, r.WantReply, r.Payload)
			if r.WantReply {
				_ = r.Reply(ok && err == nil, nil)
			}
		}
		// The client closed its side: the session is over for the target too.
		_ = up.Close()
	}()

	outputs.Wait()
	<-upDone
	for _, r := range exitReqs {
		_, _ = down.SendRequest(r.Type, false, r.Payload)
	}
	_ = down.CloseWrite()
	_ = down.Close()
	_ = up.Close()
	// The input copy and the client's request loop end when the client
	// answers our close, or when its connection ends; the connection owns
	// them from here, so a silent client cannot hold the session open.
	res.In, res.Out, res.Err = in.Load(), out.Load(), errb.Load()
	return res
}

// signalName reads the signal name from an exit-signal payload.
func signalName(p []byte) string {
	var msg struct {
		Signal     string
		CoreDumped bool
		Error      string
		Lang       string
	}
	if err := ssh.Unmarshal(p, &msg); err != nil {
		return "?"
	}
	return msg.Signal
}
