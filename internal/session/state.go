package session

// State is where a session stands in the four-eyes life cycle (M6).
type State string

// The states of a session. Waiting and Paused hold the owner's input back;
// only Live forwards input to the target. Ended is final.
const (
	Waiting State = "waiting" // four-eyes host, no qualified second person yet; no target connection
	Live    State = "live"    // input from the owner and peers reaches the target
	Paused  State = "paused"  // the second person left; input is discarded (not sent, not recorded) until another joins or grace expires
	Ended   State = "ended"   // final; everybody is told and disconnected
)

// Event is something that moves the state machine.
type Event string

// The events of the state machine.
const (
	SecondJoined Event = "second-joined" // the first qualified second person is present
	SecondLeft   Event = "second-left"   // the last qualified second person left
	WaitTimeout  Event = "wait-timeout"  // nobody qualified joined within Options.WaitTimeout
	GraceExpired Event = "grace-expired" // nobody qualified rejoined within Options.Grace
	EndEvent     Event = "end"           // somebody ended the session, the owner left, or the target closed
)

// Next is the pure four-eyes state machine. It returns the state after e
// happens in s and whether that is a change; events that mean nothing in a
// state (a grace expiry while Live, anything once Ended) leave it unchanged,
// so stale timers and duplicate notifications are harmless.
func Next(s State, e Event) (State, bool) {
	to := s
	switch s {
	case Waiting:
		switch e {
		case SecondJoined:
			to = Live
		case WaitTimeout, EndEvent:
			to = Ended
		}
	case Live:
		switch e {
		case SecondLeft:
			to = Paused
		case EndEvent:
			to = Ended
		}
	case Paused:
		switch e {
		case SecondJoined:
			to = Live
		case GraceExpired, EndEvent:
			to = Ended
		}
	}
	return to, to != s
}
