package audit

import "time"

// The typed constructors: one struct per event type (a few serve several
// types), whose Event method returns the Event to append. The struct tags
// are the schema: `field:"host"` puts a value into an Event field,
// `attr:"key"` into Attrs under a key of attrs.go, with `doc` its meaning
// and `role` the part a person plays when the value names one. The
// catalog (schema.go) and docs/AUDIT.md are derived from the same tags,
// so they cannot disagree with what is written.
//
// Values are written as text: integers in decimal, booleans as true or
// false, times in UTC RFC 3339, durations as Go writes them, lists joined
// by commas. `omitempty` leaves out an empty value; a nil pointer is
// always left out, which is how a group of keys that belong together
// (a recording's summary, byte counts) is written all or not at all.

// Conn names the person of a gateway connection and the address the
// connection came from.
type Conn struct {
	Person string `field:"person"`
	Source string `field:"source"`
}

// Target names where a session or forward goes: who, from where, which
// host and login, under which request. Every event of one session carries
// the same Target (with Session set once the session has an id).
type Target struct {
	Person  string `field:"person"`
	Source  string `field:"source"`
	Session string `field:"session"`
	Tenant  string `field:"tenant"`
	Host    string `field:"host"`
	Login   string `field:"login"`
	Request string `field:"request"`
}

// ClientUser is the SSH user name a client sent: it comes from the client,
// so it is cut to a bound, with its hash and length when it was cut (or
// always, before authentication, so attempts can be matched).
type ClientUser struct {
	User       string `attr:"user,omitempty" doc:"the SSH user name the client sent (cut to a bound)"`
	UserSHA256 string `attr:"user_sha256,omitempty" doc:"SHA-256 (hex) of the whole user name"`
	UserBytes  int    `attr:"user_bytes,omitempty" doc:"length of the user name when it was cut"`
}

// AuthSuccessEvent: a person logged in (the login takes effect only once
// this is stored).
type AuthSuccessEvent struct {
	Conn
	Method string `attr:"method" doc:"the authentication method (publickey)"`
	Key    string `attr:"key" doc:"the fingerprint of the key used"`
	ClientUser
}

func (b AuthSuccessEvent) Event() Event { return build(AuthSuccess, b) }

// AuthFailureEvent: a connection ended without authenticating.
type AuthFailureEvent struct {
	Conn
	Stage     string `attr:"stage" doc:"where it ended: kex (no key exchange in time), auth, or proxy (a PROXY protocol header missing or malformed from a load balancer, or sent by an address that may not send one)"`
	Attempts  int    `attr:"attempts" doc:"failed authentication attempts"`
	Method    string `attr:"method,omitempty" doc:"the last method tried"`
	Methods   string `attr:"methods,omitempty" doc:"every method tried, comma-separated"`
	Key       string `attr:"key,omitempty" doc:"the last key offered (fingerprint)"`
	Keys      string `attr:"keys,omitempty" doc:"the keys offered (fingerprints, at most five), comma-separated"`
	KeysMore  int    `attr:"keys_more,omitempty" doc:"how many more keys were offered than listed"`
	Reason    string `attr:"reason,omitempty" doc:"why the last attempt failed"`
	RefusedBy string `attr:"refused_by,omitempty" doc:"the connection cap that refused a proven key"`
	Timeout   bool   `attr:"timeout,omitempty" doc:"true when the connection ran out of time"`
	Evicted   bool   `attr:"evicted,omitempty" doc:"true when a newcomer took the connection's slot: the unauthenticated connections were at their cap and this client had sent nothing for limits.evict_after_silence, longer than any other"`
	ClientUser
}

func (b AuthFailureEvent) Event() Event { return build(AuthFailure, b) }

// AuthBlockedEvent: a source or person exceeded the failure limit.
type AuthBlockedEvent struct {
	Conn
	Scope string    `attr:"scope" doc:"source or person: what is blocked"`
	Until time.Time `attr:"until" doc:"when the block ends"`
}

func (b AuthBlockedEvent) Event() Event { return build(AuthBlocked, b) }

// AuthUnblockedEvent: an operator lifted a block early.
type AuthUnblockedEvent struct {
	Time       time.Time `field:"time" doc:"when the operator asked"`
	Person     string    `field:"person"`
	Source     string    `field:"source" doc:"the address unblocked (scope source)"`
	Scope      string    `attr:"scope" doc:"source or person"`
	By         string    `attr:"by" role:"operator" doc:"the operator (local:USER of tandem unblock)"`
	WasBlocked bool      `attr:"was_blocked" doc:"whether this gateway held the block"`
}

func (b AuthUnblockedEvent) Event() Event { return build(AuthUnblocked, b) }

// AuthSuppressedEvent: pre-authentication events dropped by the per-source
// audit budget since the last such event.
type AuthSuppressedEvent struct {
	Dropped   int    `attr:"dropped" doc:"events dropped in total"`
	Sources   int    `attr:"sources" doc:"sources that had events dropped"`
	Top       string `attr:"top" doc:"the sources that dropped most, source=count, comma-separated"`
	PerMinute int    `attr:"per_minute" doc:"the budget per source and minute (limits.preauth_audit_per_minute)"`
}

func (b AuthSuppressedEvent) Event() Event { return build(AuthSuppressed, b) }

// SessionStartEvent: a session on a target starts (stored before the
// target is dialled).
type SessionStartEvent struct {
	Target
	Action   string `attr:"action" doc:"shell, exec or sftp"`
	Mode     string `attr:"mode" doc:"how the client came: jump or user (login%host)"`
	Command  string `attr:"command,omitempty" doc:"the command, for exec"`
	Terminal bool   `attr:"terminal,omitempty" doc:"true when a request granted a terminal for a command"`
	FourEyes *bool  `attr:"four_eyes" doc:"whether the session needs a second person (interactive sessions)"`
}

func (b SessionStartEvent) Event() Event { return build(SessionStart, b) }

// Denied is the refusal of the session b describes, with the policy's
// reason and verdict (verdict empty when no policy was asked).
func (b SessionStartEvent) Denied(reason, verdict string) SessionDeniedEvent {
	return SessionDeniedEvent{Target: b.Target, Action: b.Action, Mode: b.Mode, Command: b.Command, Reason: reason, Verdict: verdict}
}

// SessionDeniedEvent: a session, channel or jump was refused, or a join
// to a shared session (action join, Session naming the session).
type SessionDeniedEvent struct {
	Target
	Action           string `attr:"action,omitempty" doc:"shell, exec, sftp, or join for a refused join to a shared session"`
	JoinMode         string `attr:"join_mode,omitempty" doc:"for a refused join: the mode asked for, peer or observer (empty: whatever the policy grants)"`
	RelayedBy        string `attr:"relayed_by,omitempty" doc:"for a refused join relayed by another node of the cluster: that node; the node holding the session decided"`
	Mode             string `attr:"mode,omitempty" doc:"jump or user"`
	Command          string `attr:"command,omitempty" doc:"the command asked for"`
	Channel          string `attr:"channel,omitempty" doc:"the SSH channel type refused"`
	Reason           string `attr:"reason" doc:"why"`
	Verdict          string `attr:"verdict,omitempty" doc:"the policy's verdict"`
	ConnectionClosed *bool  `attr:"connection_closed" doc:"whether the gateway closed the whole connection"`
}

func (b SessionDeniedEvent) Event() Event { return build(SessionDenied, b) }

// ExecTraffic is the bytes of an exec or sftp session per stream.
type ExecTraffic struct {
	In  int64 `attr:"bytes_in" doc:"bytes from the client to the target"`
	Out int64 `attr:"bytes_out" doc:"bytes from the target's stdout"`
	Err int64 `attr:"bytes_err" doc:"bytes from the target's stderr"`
}

// Traffic is the bytes of a forward per direction.
type Traffic struct {
	In  int64 `attr:"bytes_in" doc:"bytes from the client to the destination"`
	Out int64 `attr:"bytes_out" doc:"bytes from the destination to the client"`
}

// StreamDigest is one recorded stream of an exec, sftp or forward session.
type StreamDigest struct {
	Bytes       int64  `attr:"bytes" doc:"bytes"`
	SHA256      string `attr:"sha256" doc:"SHA-256 (hex) of the bytes"`
	StoredBytes int64  `attr:"stored_bytes,omitempty" doc:"bytes kept in the recording, when it was capped (stream_cap)"`
}

// SealedKeystrokes is what was typed at secret prompts: sealed under the
// tenant's sealed key in a sidecar file, not recorded.
type SealedKeystrokes struct {
	Path       string `attr:"sealed" doc:"the sidecar file with the sealed keystrokes"`
	Prompts    int64  `attr:"sealed_prompts" doc:"secret prompts answered"`
	Keystrokes int64  `attr:"sealed_keystrokes" doc:"keystrokes sealed"`
	Bytes      int64  `attr:"sealed_bytes" doc:"bytes sealed"`
	FileSHA256 string `attr:"sealed_file_sha256" doc:"SHA-256 (hex) of the sidecar file"`
	Flag       string `attr:"sealed_flag,omitempty" doc:"many: more than a few secrets' worth (a fake prompt hiding commands?)"`
}

// RecordingSummary is a recording's fingerprints, so the recording can be
// checked against the log (the file hash also after its key is shredded).
type RecordingSummary struct {
	Path       string        `attr:"recording" doc:"the recording file"`
	Error      string        `attr:"recording_error,omitempty" doc:"why the recording failed (then no hashes)"`
	SHA256     string        `attr:"recording_sha256,omitempty" doc:"SHA-256 (hex) of the recorded content"`
	FileSHA256 string        `attr:"recording_file_sha256,omitempty" doc:"SHA-256 (hex) of the encrypted file"`
	Stdin      *StreamDigest `attr:"stdin_" doc:"the client's input"`
	Stdout     *StreamDigest `attr:"stdout_" doc:"the target's output"`
	Stderr     *StreamDigest `attr:"stderr_" doc:"the target's error output"`
	*SealedKeystrokes
}

// SessionEndEvent: a session on a target ended.
type SessionEndEvent struct {
	Target
	*ExecTraffic
	Reason     string  `attr:"reason,omitempty" doc:"why it was ended from outside (lock, revoke, reload) or by its participants"`
	Error      string  `attr:"error,omitempty" doc:"what failed (the session could not start, or broke)"`
	ExitStatus *uint32 `attr:"exit_status" doc:"the target's exit status"`
	ExitSignal string  `attr:"exit_signal,omitempty" doc:"the signal that ended the command"`
	*RecordingSummary
}

func (b SessionEndEvent) Event() Event { return build(SessionEnd, b) }

// SessionStateEvent: a shared session changed state. State is one of
// SessionWaiting, SessionLive, SessionPaused, SessionResumed and
// SessionEnded.
type SessionStateEvent struct {
	State Type `field:"type"`
	Target
	Reason string `attr:"reason" doc:"why, in the session's words"`
}

func (b SessionStateEvent) Event() Event { return build(b.State, b) }

// SessionJoinEvent: a person joined a shared session.
type SessionJoinEvent struct {
	Target
	Participant string `attr:"participant" role:"joiner" doc:"the person who joined"`
	Mode        string `attr:"mode" doc:"how they joined: peer or observer"`
	External    bool   `attr:"external" doc:"whether the joiner is an external expert"`
}

func (b SessionJoinEvent) Event() Event { return build(SessionJoin, b) }

// SessionLeaveEvent: a person left a shared session (or was taken out).
type SessionLeaveEvent struct {
	Target
	Participant string `attr:"participant" role:"joiner" doc:"the person who left"`
	Reason      string `attr:"reason" doc:"why"`
}

func (b SessionLeaveEvent) Event() Event { return build(SessionLeave, b) }

// ForwardDeniedEvent: a port forward, agent or X11 forwarding, or remote
// forwarding was refused.
type ForwardDeniedEvent struct {
	Target
	Kind        string `attr:"kind" doc:"local (direct-tcpip), remote (tcpip-forward), or the refused channel or request type"`
	Destination string `attr:"destination,omitempty" doc:"host:port asked for"`
	Mode        string `attr:"mode,omitempty" doc:"the route the forward came on: jump or user"`
	Reason      string `attr:"reason,omitempty" doc:"why"`
	Verdict     string `attr:"verdict,omitempty" doc:"the policy's verdict"`
}

func (b ForwardDeniedEvent) Event() Event { return build(ForwardDenied, b) }

// ForwardStartEvent: a port forward through a target starts.
type ForwardStartEvent struct {
	Target
	Kind        string `attr:"kind" doc:"local"`
	Destination string `attr:"destination" doc:"host:port, opened from the target"`
	Mode        string `attr:"mode" doc:"jump or user"`
}

func (b ForwardStartEvent) Event() Event { return build(ForwardStart, b) }

// Denied is the refusal of the forward b describes, with the policy's
// reason and verdict.
func (b ForwardStartEvent) Denied(reason, verdict string) ForwardDeniedEvent {
	return ForwardDeniedEvent{Target: b.Target, Kind: b.Kind, Destination: b.Destination, Mode: b.Mode, Reason: reason, Verdict: verdict}
}

// ForwardEndEvent: a port forward ended.
type ForwardEndEvent struct {
	Target
	Destination string `attr:"destination" doc:"host:port"`
	*Traffic
	Reason string `attr:"reason,omitempty" doc:"why it was ended from outside"`
	Error  string `attr:"error,omitempty" doc:"what failed"`
	*RecordingSummary
}

func (b ForwardEndEvent) Event() Event { return build(ForwardEnd, b) }

// ChannelLimitedEvent: a client went past a cap on what it may send before
// its session starts; once per channel.
type ChannelLimitedEvent struct {
	Conn
	Limit  string `attr:"limit" doc:"the cap"`
	Max    int    `attr:"max" doc:"its value"`
	Kind   string `attr:"kind" doc:"the request type that went past it"`
	Reason string `attr:"reason" doc:"what the cap bounds"`
	Closed bool   `attr:"closed,omitempty" doc:"true when the gateway closed the channel for it"`
}

func (b ChannelLimitedEvent) Event() Event { return build(ChannelLimited, b) }

// CommandEvent: a gateway command is about to run.
type CommandEvent struct {
	Conn
	Command string `attr:"command" doc:"the command line"`
}

func (b CommandEvent) Event() Event { return build(Command, b) }

// RequestRef names an access request in the events about it.
type RequestRef struct {
	Conn
	Request   string   `field:"request"`
	Tenant    string   `field:"tenant" doc:"the tenant of the hosts it covers, when they all belong to one"`
	Hosts     []string `attr:"hosts" doc:"the hosts it covers, comma-separated"`
	Login     string   `attr:"login" doc:"the login it covers"`
	Requester string   `attr:"requester" role:"requester" doc:"who asked"`
}

// RequestCreateEvent: a person asked for access.
type RequestCreateEvent struct {
	RequestRef
	Duration time.Duration `attr:"duration" doc:"how long it lasts once approved"`
	Reason   string        `attr:"reason" doc:"purpose and ticket"`
	TTY      bool          `attr:"tty" doc:"whether commands with a terminal are asked for"`
}

func (b RequestCreateEvent) Event() Event { return build(RequestCreate, b) }

// RequestApproveEvent: a person approved a request.
type RequestApproveEvent struct {
	RequestRef
	Comment    string    `attr:"comment" doc:"the approver's comment"`
	Approvals  int       `attr:"approvals" doc:"approvals so far"`
	TTY        bool      `attr:"tty" doc:"whether terminals were asked for (approved only with --terminals)"`
	ValidUntil time.Time `attr:"valid_until,omitempty" doc:"when it ends, once approved"`
}

func (b RequestApproveEvent) Event() Event { return build(RequestApprove, b) }

// RequestDenyEvent: a person denied a request.
type RequestDenyEvent struct {
	RequestRef
	Reason string `attr:"reason" doc:"why"`
}

func (b RequestDenyEvent) Event() Event { return build(RequestDeny, b) }

// RequestRevokeEvent: a person ended a request early.
type RequestRevokeEvent struct {
	RequestRef
	Reason string `attr:"reason" doc:"why"`
}

func (b RequestRevokeEvent) Event() Event { return build(RequestRevoke, b) }

// RequestExpiredEvent: a live session ended because its request ran out.
type RequestExpiredEvent struct {
	Person  string `field:"person"`
	Session string `field:"session"`
	Request string `field:"request"`
}

func (b RequestExpiredEvent) Event() Event { return build(RequestExpired, b) }

// Recording names a recording that is read and who reads it.
type Recording struct {
	Person  string `field:"person"`
	Source  string `field:"source" doc:"the reader's address (ssh gw …)"`
	Actor   string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran tandem recording (local:USER)"`
	Session string `field:"session"`
	Tenant  string `field:"tenant"`
	Host    string `field:"host"`
	Owner   string `attr:"owner,omitempty" role:"owner" doc:"the person whose session it is"`
}

// Listing is a listing of recordings: the filter and what it found.
type Listing struct {
	Filter string `attr:"listing" doc:"the listing's filter"`
	Count  int    `attr:"count" doc:"recordings listed"`
}

// RecordingReadEvent: a recording was replayed, or recordings were listed.
type RecordingReadEvent struct {
	Recording
	*Listing
}

func (b RecordingReadEvent) Event() Event { return build(RecordingRead, b) }

// RecordingExportEvent: a recording left the gateway as a file.
type RecordingExportEvent struct {
	Recording
}

func (b RecordingExportEvent) Event() Event { return build(RecordingExport, b) }

// RecordingOpened is the event for opening recording r to read it (what is
// RecordingRead) or to export it (RecordingExport).
func RecordingOpened(what Type, r Recording) Event {
	if what == RecordingExport {
		return RecordingExportEvent{r}.Event()
	}
	return RecordingReadEvent{Recording: r}.Event()
}

// LockEvent: a person was locked out.
type LockEvent struct {
	Time   time.Time `field:"time" doc:"when the lock was made"`
	Person string    `field:"person"`
	By     string    `attr:"by" role:"locker" doc:"who locked: a person (ssh gw lock) or local:USER (tandem lock)"`
	Reason string    `attr:"reason" doc:"why"`
	Until  time.Time `attr:"until,omitempty" doc:"when the lock ends by itself"`
}

func (b LockEvent) Event() Event { return build(Lock, b) }

// UnlockEvent: a lock was lifted.
type UnlockEvent struct {
	Time   time.Time `field:"time" doc:"when the lock was lifted"`
	Person string    `field:"person"`
	By     string    `attr:"by" role:"unlocker" doc:"who unlocked: a person (ssh gw unlock) or local:USER (tandem unlock)"`
	Reason string    `attr:"reason" doc:"why"`
}

func (b UnlockEvent) Event() Event { return build(Unlock, b) }

// FreezeEvent: a host, tenant or label was frozen.
type FreezeEvent struct {
	Tenant string `field:"tenant" doc:"the tenant frozen (kind tenant), or the frozen host's tenant (kind host)"`
	Host   string `field:"host" doc:"the host frozen (kind host)"`
	ID     string `attr:"id" doc:"the freeze's id"`
	Kind   string `attr:"kind" doc:"host, tenant or label"`
	Value  string `attr:"value" doc:"the host name, tenant id or label KEY=VALUE"`
	Reason string `attr:"reason" doc:"why: shown to every person refused or ended"`
	By     string `attr:"by" role:"operator" doc:"the person who froze (permission freeze)"`
	Actor  string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran the command (local:USER)"`
}

func (b FreezeEvent) Event() Event { return build(Freeze, b) }

// UnfreezeEvent: a freeze was lifted.
type UnfreezeEvent struct {
	Tenant string `field:"tenant" doc:"as in the freeze"`
	Host   string `field:"host" doc:"as in the freeze"`
	ID     string `attr:"id" doc:"the freeze's id"`
	Kind   string `attr:"kind" doc:"host, tenant or label"`
	Value  string `attr:"value" doc:"the host name, tenant id or label KEY=VALUE"`
	By     string `attr:"by" role:"operator" doc:"the person who lifted it (permission freeze)"`
	Actor  string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran the command (local:USER)"`
}

func (b UnfreezeEvent) Event() Event { return build(Unfreeze, b) }

// ConfigChangeEvent: one entity of the configuration was created,
// modified or deleted by a reload; written before the reload takes effect.
type ConfigChangeEvent struct {
	Kind    string            `attr:"kind" doc:"create, modify or delete"`
	Entity  string            `attr:"entity" doc:"person, key, role, tenant, host, policy …"`
	ID      string            `attr:"id" doc:"the entity's id"`
	Trigger string            `attr:"trigger" doc:"what caused the reload (see config.reload)"`
	By      string            `attr:"by,omitempty" role:"configurer" doc:"who reloaded, as in config.reload"`
	Digest  string            `attr:"digest" doc:"the new configuration's digest"`
	Old     map[string]string `attr:"old." doc:"a changed field's value before"`
	New     map[string]string `attr:"new." doc:"a changed field's value after"`
}

func (b ConfigChangeEvent) Event() Event { return build(ConfigChange, b) }

// ConfigReloadEvent: the configuration is reloaded, by whom (M12); written
// before its config.change events and before it takes effect.
type ConfigReloadEvent struct {
	Source         string `field:"source" doc:"the address of the person's connection (ssh gw reload)"`
	By             string `attr:"by" role:"configurer" doc:"who reloaded: a person (ssh gw reload, tandem reload --by) or unknown (signal) for a bare SIGHUP"`
	ByUnknown      bool   `attr:"by_unknown,omitempty" doc:"true when the person named by tandem reload --by is not in the configuration in force (recorded as given)"`
	Actor          string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran tandem reload (local:USER)"`
	Trigger        string `attr:"trigger" doc:"signal, tandem reload or ssh gw reload, and the file"`
	Digest         string `attr:"digest" doc:"the new configuration's digest"`
	PreviousDigest string `attr:"previous_digest" doc:"the digest of the configuration it replaces"`
	Changes        int    `attr:"changes" doc:"how many config.change events follow"`
}

func (b ConfigReloadEvent) Event() Event { return build(ConfigReload, b) }

// AuditReadEvent: a person read audit events through the gateway (`ssh gw
// audit show`); stored before any event is shown.
type AuditReadEvent struct {
	Conn
	Filter    string   `attr:"filter" doc:"the filters asked for"`
	Count     int      `attr:"count" doc:"events shown"`
	Truncated bool     `attr:"truncated,omitempty" doc:"true when more events matched than the limit let show"`
	Tenants   []string `attr:"tenants" doc:"the tenants whose events the reader may read, comma-separated"`
}

func (b AuditReadEvent) Event() Event { return build(AuditRead, b) }

// GatewayStartEvent: the gateway starts serving (it does not, unless this
// is stored).
type GatewayStartEvent struct {
	Listen       string `attr:"listen" doc:"the address it listens on"`
	ConfigDigest string `attr:"config_digest" doc:"the configuration's digest"`
	Version      string `attr:"version" doc:"Tandem's version"`
}

func (b GatewayStartEvent) Event() Event { return build(GatewayStart, b) }

// CARotatedEvent: a step of a CA rotation took effect.
type CARotatedEvent struct {
	Kind    string    `attr:"kind" doc:"which CA: user (targets trust it) or host (clients trust it)"`
	Phase   string    `attr:"phase" doc:"the step: start (next key published, old one signs), finish (new key signs, old one still published) or retire (old key no longer published)"`
	OldKey  string    `attr:"old_key" doc:"the SHA256 fingerprint of the CA key being replaced"`
	NewKey  string    `attr:"new_key" doc:"the SHA256 fingerprint of the CA key replacing it"`
	Until   time.Time `attr:"until,omitempty" doc:"start: when the overlap ends and the new key may sign"`
	Trigger string    `attr:"trigger" doc:"tandem ca rotate, or overlap ended (the gateway finished the rotation itself)"`
}

func (b CARotatedEvent) Event() Event { return build(CARotated, b) }

// KEKRotatedEvent: every data key is wrapped by a new key-encryption key.
// It names the KEKs by their files, never by anything derived from the key.
type KEKRotatedEvent struct {
	OldKey    string `attr:"old_key" doc:"the key-encryption key replaced: recording.kek_file or recording.age_identity"`
	NewKey    string `attr:"new_key" doc:"the key-encryption key that wraps the data keys now: its file"`
	Rewrapped int    `attr:"rewrapped" doc:"data keys this run moved to the new KEK"`
	Already   int    `attr:"already" doc:"data keys an interrupted earlier run had moved already"`
	// With recordings in the cluster's database (recording.storage:
	// store) the copies of the data keys there are rewrapped too.
	SharedRewrapped int `attr:"shared_rewrapped,omitempty" doc:"copies of data keys in the cluster's database (recording.storage: store) this run moved to the new KEK"`
	SharedAlready   int `attr:"shared_already,omitempty" doc:"copies in the cluster's database that opened with the new KEK already (an earlier run, or another node's rotation)"`
}

func (b KEKRotatedEvent) Event() Event { return build(KEKRotated, b) }

// GatewayStopEvent: the gateway stopped serving.
type GatewayStopEvent struct{}

func (b GatewayStopEvent) Event() Event { return build(GatewayStop, b) }

// LogCheckpointEvent: the log signed a checkpoint.
type LogCheckpointEvent struct {
	Time time.Time `field:"time"`
	Size uint64    `attr:"size" doc:"records the checkpoint covers"`
	Root string    `attr:"root" doc:"the Merkle tree's root (base64)"`
}

func (b LogCheckpointEvent) Event() Event { return build(LogCheckpoint, b) }

// LogRecoveredEvent: opening the log found the end of an interrupted
// write and repaired it.
type LogRecoveredEvent struct {
	Records            uint64 `attr:"records" doc:"records in the log after the repair"`
	CutBytes           int64  `attr:"cut_bytes,omitempty" doc:"bytes of a torn record cut from records.log"`
	LeafCutBytes       int64  `attr:"leaf_cut_bytes,omitempty" doc:"bytes cut from leaves.bin"`
	LeavesRebuilt      int    `attr:"leaves_rebuilt,omitempty" doc:"leaf hashes recomputed from records"`
	CheckpointCutBytes int64  `attr:"checkpoint_cut_bytes,omitempty" doc:"bytes of a torn checkpoint cut"`
	WitnessCutBytes    int64  `attr:"witness_cut_bytes,omitempty" doc:"bytes of a torn witness checkpoint cut"`
}

func (b LogRecoveredEvent) Event() Event { return build(LogRecovered, b) }

// LogKeyHandoverEvent: the checkpoint signing key is about to be handed
// over; the hand-over checkpoint that follows covers this record. Both
// keys are named by their public verifier keys only.
type LogKeyHandoverEvent struct {
	OldKey string `attr:"old_key" doc:"the verifier key of the signing key retired (public; name+hash+key)"`
	NewKey string `attr:"new_key" doc:"the verifier key that signs every checkpoint from the hand-over on"`
	By     string `attr:"by,omitempty" role:"operator" doc:"the person who asked for the rotation, in the operator's words (--by)"`
	Actor  string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran the command (local:USER)"`
}

func (b LogKeyHandoverEvent) Event() Event { return build(LogKeyHandover, b) }

// CosignRefusedEvent: this node, witnessing a peer's audit log, refused
// to co-sign one of its checkpoints: evidence of a rewrite, a forged
// proof, a foreign key or a rollback on that node.
type CosignRefusedEvent struct {
	Node   string `attr:"node" doc:"the peer whose checkpoint was refused (cluster.peers)"`
	Size   uint64 `attr:"size" doc:"the size of the refused checkpoint"`
	Have   uint64 `attr:"have" doc:"the size this node co-signed last for the peer"`
	Reason string `attr:"reason" doc:"why: a second tree of a size already co-signed, a consistency proof that does not hold, another signing key, an older checkpoint"`
}

func (b CosignRefusedEvent) Event() Event { return build(CosignRefused, b) }

// LogSegmentEvent: the first record of a log segment that tandem audit
// recover started after damage; it anchors the new segment to the
// previous one and says what was lost.
type LogSegmentEvent struct {
	Time       time.Time `field:"time"`
	Segment    int       `attr:"segment" doc:"this segment's number (the first segment is 1)"`
	Previous   int       `attr:"previous" doc:"the closed segment, kept in audit/segments/NNNN"`
	AnchorSize uint64    `attr:"anchor_size" doc:"records of the previous segment covered by its last witnessed checkpoint that still verifies"`
	AnchorRoot string    `attr:"anchor_root" doc:"that checkpoint's root (base64)"`
	LostFrom   uint64    `attr:"lost_from" doc:"first index of the previous segment not carried over"`
	LostTo     uint64    `attr:"lost_to" doc:"one past the last index known to have existed (records or witness)"`
	LostBytes  int64     `attr:"lost_bytes" doc:"bytes of the previous segment's records.log after the anchor"`
	Reason     string    `attr:"reason" doc:"why, in the operator's words"`
}

func (b LogSegmentEvent) Event() Event { return build(LogSegment, b) }

// StateForgedEvent: a row of state.db failed its integrity check and was
// not honoured.
type StateForgedEvent struct {
	Time    time.Time `field:"time"`
	Person  string    `field:"person"`
	Request string    `field:"request" doc:"the request, for a forged request row"`
	Table   string    `attr:"table" doc:"the table: requests, request_approvals or locks"`
	Row     string    `attr:"row" doc:"the row (request id, person; * for the lock table's seal)"`
	What    string    `attr:"what" doc:"what failed"`
}

func (b StateForgedEvent) Event() Event { return build(StateForged, b) }

// SealedRows counts the rows a new state key sealed.
type SealedRows struct {
	Requests         int `attr:"requests" doc:"request rows sealed"`
	RequestApprovals int `attr:"request_approvals" doc:"approval rows sealed"`
	Locks            int `attr:"locks" doc:"lock rows sealed"`
}

// ResealedLocks is an operator's re-seal of the lock table.
type ResealedLocks struct {
	Table      string `attr:"table" doc:"locks"`
	Rows       int    `attr:"rows" doc:"rows sealed"`
	RowsFailed int    `attr:"rows_failed" doc:"rows that had failed their check"`
	SealFailed bool   `attr:"seal_failed" doc:"whether the table's seal had failed"`
}

// StateResealedEvent: rows of state.db were sealed wholesale: by the
// process that created the state key (the upgrade; SealedRows), or by an
// operator with tandem locks --reseal (ResealedLocks).
type StateResealedEvent struct {
	By     string `attr:"by,omitempty" role:"operator" doc:"the operator (local:USER)"`
	Reason string `attr:"reason,omitempty" doc:"why, when the state key was created"`
	*SealedRows
	*ResealedLocks
}

func (b StateResealedEvent) Event() Event { return build(StateResealed, b) }

// OutboxInvalidEvent: an event another process queued for the log could
// not be read; it is logged as this instead.
type OutboxInvalidEvent struct {
	Error string `attr:"error" doc:"why it could not be read"`
}

func (b OutboxInvalidEvent) Event() Event { return build(OutboxInvalid, b) }

// KeyDestroyedEvent: the retention job destroyed a data key; what it
// encrypted is unreadable for good.
type KeyDestroyedEvent struct {
	Tenant   string `field:"tenant" doc:"the tenant whose key it was (_gateway: the gateway's own events)"`
	Class    string `attr:"class" doc:"the retention class: admin, operational, content or sealed"`
	Day      string `attr:"day" doc:"the UTC day the key encrypted (YYYY-MM-DD)"`
	KeyID    string `attr:"key_id" doc:"the destroyed key's id"`
	Reason   string `attr:"reason" doc:"why now: the period that ended"`
	Repaired bool   `attr:"repaired,omitempty" doc:"true when written by a later run: the destruction was done, its event lost in a crash"`
}

func (b KeyDestroyedEvent) Event() Event { return build(KeyDestroyed, b) }

// RetentionExtendedEvent: an operator kept a tenant's operational data
// longer (at most 14 days), on a request.
type RetentionExtendedEvent struct {
	Tenant     string    `field:"tenant"`
	ID         string    `attr:"id" doc:"the extension's id"`
	Class      string    `attr:"class" doc:"the retention class (operational)"`
	Until      time.Time `attr:"until" doc:"the last day kept"`
	RequestRef string    `attr:"request_ref" doc:"the request that asked for it (ticket, letter)"`
	By         string    `attr:"by" role:"operator" doc:"the person who extended"`
	Actor      string    `attr:"actor,omitempty" role:"operator" doc:"the local user who ran the command (local:USER)"`
}

func (b RetentionExtendedEvent) Event() Event { return build(RetentionExtended, b) }

// RetentionHoldEvent: a legal hold was placed or renewed.
type RetentionHoldEvent struct {
	Tenant  string    `field:"tenant" doc:"the tenant held (scope tenant)"`
	Person  string    `field:"person" doc:"the person whose data is held (scope person)"`
	Session string    `field:"session" doc:"the session whose data is held (scope session)"`
	ID      string    `attr:"id" doc:"the hold's id"`
	Scope   string    `attr:"scope" doc:"tenant, person or session"`
	Reason  string    `attr:"reason" doc:"why"`
	Ref     string    `attr:"ref" doc:"the case or order it serves"`
	Expires time.Time `attr:"expires" doc:"when it ends unless renewed"`
	Renewed bool      `attr:"renewed,omitempty" doc:"true when an existing hold was renewed"`
	By      string    `attr:"by" role:"operator" doc:"the person who placed or renewed it"`
	Actor   string    `attr:"actor,omitempty" role:"operator" doc:"the local user who ran the command (local:USER)"`
}

func (b RetentionHoldEvent) Event() Event { return build(RetentionHold, b) }

// RetentionReleasedEvent: a legal hold was released.
type RetentionReleasedEvent struct {
	ID    string `attr:"id" doc:"the hold's id"`
	By    string `attr:"by" role:"operator" doc:"the person who released it"`
	Actor string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran the command (local:USER)"`
}

func (b RetentionReleasedEvent) Event() Event { return build(RetentionReleased, b) }

// RetentionNoticeEvent: an attempt to deliver a notice to the data
// protection officer.
type RetentionNoticeEvent struct {
	Tenant    string `field:"tenant"`
	Extension string `attr:"extension" doc:"the extension the notice is about"`
	Outcome   string `attr:"outcome" doc:"delivered or failed"`
	Via       string `attr:"via" doc:"smtp or command"`
	Attempt   int    `attr:"attempt" doc:"the attempt's number (1 for the first)"`
	Error     string `attr:"error,omitempty" doc:"why delivery failed; it is retried"`
}

func (b RetentionNoticeEvent) Event() Event { return build(RetentionNotice, b) }

// BreakglassUsedEvent: an emergency certificate was issued from the
// shares of the emergency CA while the gateway was down; written by
// `tandem breakglass report` from the emergency record, whose signature
// by the emergency CA it verified.
type BreakglassUsedEvent struct {
	Tenant        string    `field:"tenant" doc:"the host's tenant, if the host is configured"`
	Person        string    `field:"person" doc:"the first holder whose share was used"`
	Host          string    `field:"host" doc:"the host the certificate was issued for (the certificate names it in its key id)"`
	Login         string    `field:"login" doc:"the login the certificate is valid for"`
	CoHolders     string    `attr:"co_holders" role:"co_holder" doc:"the other holders whose shares were used, comma-separated"`
	Reason        string    `attr:"reason" doc:"the reason given"`
	Serial        string    `attr:"serial" doc:"the certificate's serial"`
	KeyID         string    `attr:"key_id" doc:"the certificate's key id, as targets' sshd logs show it"`
	Key           string    `attr:"key" doc:"the fingerprint of the certified key"`
	CA            string    `attr:"ca" doc:"the fingerprint of the emergency CA"`
	ValidAfter    time.Time `attr:"valid_after" doc:"the start of the certificate's validity"`
	ValidUntil    time.Time `attr:"valid_until" doc:"the end of the certificate's validity"`
	Issued        time.Time `attr:"issued" doc:"when it was issued"`
	IssuedBy      string    `attr:"issued_by,omitempty" role:"operator" doc:"the local user who ran tandem breakglass issue (local:USER)"`
	SourceAddress string    `attr:"source_address,omitempty" doc:"the certificate's source-address restriction"`
	Actor         string    `attr:"actor,omitempty" role:"operator" doc:"the local user who ran tandem breakglass report (local:USER)"`
}

func (b BreakglassUsedEvent) Event() Event { return build(BreakglassUsed, b) }

// BackupCreatedEvent: a backup of the data directory was written.
type BackupCreatedEvent struct {
	Trigger      string `attr:"trigger" doc:"who took it: schedule (tandem serve) or command (tandem backup)"`
	Path         string `attr:"path" doc:"the backup file"`
	Size         int64  `attr:"size" doc:"its size in bytes"`
	SHA256       string `attr:"sha256" doc:"SHA-256 (hex) of the backup file, to match a stored copy against"`
	Files        int    `attr:"files" doc:"files in its manifest"`
	AuditRecords uint64 `attr:"audit_records" doc:"records of the audit log it holds"`
}

func (b BackupCreatedEvent) Event() Event { return build(BackupCreated, b) }

// ReportCreatedEvent: a report of the audit log left the gateway as a
// file: an evidence report of a tenant, or an access report of a person.
type ReportCreatedEvent struct {
	Person  string `field:"person" doc:"the person an access report is about (kind person)"`
	Tenant  string `field:"tenant" doc:"the tenant an evidence report is about (kind tenant)"`
	Kind    string `attr:"kind" doc:"tenant (an evidence report, tandem report --tenant) or person (an access report, tandem report --person)"`
	Period  string `attr:"period,omitempty" doc:"the days reported on, FROM..TO (UTC, both included)"`
	Records int    `attr:"records" doc:"audit records the report holds or drew on"`
	SHA256  string `attr:"sha256,omitempty" doc:"SHA-256 (hex) of the file written (the HTML of an evidence report)"`
	Actor   string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran tandem report (local:USER)"`
}

func (b ReportCreatedEvent) Event() Event { return build(ReportCreated, b) }

// ReviewSampledEvent: a spot check drew sessions and access requests of
// a tenant at random for review.
type ReviewSampledEvent struct {
	Tenant   string `field:"tenant" doc:"the tenant whose sessions and requests were drawn"`
	Period   string `attr:"period" doc:"the days drawn from, FROM..TO (UTC, both included)"`
	Seed     string `attr:"seed" doc:"the seed: the same seed over the same records draws the same items"`
	Count    int    `attr:"count" doc:"items drawn"`
	Sessions string `attr:"sampled_sessions,omitempty" doc:"the sessions drawn, comma-separated"`
	Requests string `attr:"sampled_requests,omitempty" doc:"the access requests drawn, comma-separated"`
	Actor    string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran tandem review sample (local:USER)"`
}

func (b ReviewSampledEvent) Event() Event { return build(ReviewSampled, b) }

// ReviewVerdictEvent: a reviewer recorded a verdict on a drawn session or
// access request (ssh gw review record).
type ReviewVerdictEvent struct {
	Conn
	Tenant  string `field:"tenant" doc:"the tenant of the session or request"`
	Session string `field:"session" doc:"the session reviewed"`
	Request string `field:"request" doc:"the access request reviewed"`
	Verdict string `attr:"verdict" doc:"ok or finding"`
	Note    string `attr:"note,omitempty" doc:"the reviewer's note"`
}

func (b ReviewVerdictEvent) Event() Event { return build(ReviewVerdict, b) }

// DisclosureCase names a disclosure case and the tenant whose data it
// concerns. The tenant is an attribute: disclosure records are the
// gateway's, not the tenant's, so that neither the tenant's auditors
// (audit show, the evidence report) read a case whose notice a legal hold
// withholds, nor does the tenant's retention or destruction take the
// record of a lawful disclosure with it.
type DisclosureCase struct {
	Tenant string `attr:"case_tenant" doc:"the tenant whose data is disclosed"`
	ID     string `attr:"id" doc:"the case's id"`
}

// DisclosureRequestedEvent: a person asked for data to be handed to an
// authority on a legal basis (ssh gw disclose request).
type DisclosureRequestedEvent struct {
	Conn
	DisclosureCase
	Scope        string `attr:"scope" doc:"what is disclosed: session:ID or period:FROM..TO (UTC days)"`
	LegalBasis   string `attr:"legal_basis" doc:"the legal basis (court order, Art. 6(1)(c) with the obligation, Art. 6(1)(f) with the investigation number, imminent danger)"`
	Reason       string `attr:"reason" doc:"the purpose, in the requester's words"`
	Recipient    string `attr:"recipient" doc:"the recipient's key: its kind and fingerprint"`
	RecipientKey string `attr:"recipient_key" doc:"the recipient's public key (age recipient, SSH key or armored OpenPGP key)"`
	SealedInput  bool   `attr:"sealed_input" doc:"whether keystrokes typed at secret prompts are included (only where the legal basis covers them)"`
	Contact      string `attr:"contact" doc:"the tenant's contact to notify, or why notification is withheld (a legal hold)"`
}

func (b DisclosureRequestedEvent) Event() Event { return build(DisclosureRequested, b) }

// DisclosureApprovedEvent: a person approved a disclosure case.
type DisclosureApprovedEvent struct {
	Conn
	DisclosureCase
	DPO       bool `attr:"dpo" doc:"whether the approver holds the dpo permission"`
	Approvals int  `attr:"approvals" doc:"approvals of the case so far, this one included"`
}

func (b DisclosureApprovedEvent) Event() Event { return build(DisclosureApproved, b) }

// DisclosureExportedEvent: an approved case's data left the gateway,
// encrypted to the recipient.
type DisclosureExportedEvent struct {
	DisclosureCase
	Path       string `attr:"path" doc:"the encrypted file written"`
	SHA256     string `attr:"sha256" doc:"SHA-256 (hex) of the encrypted file"`
	Records    int    `attr:"records" doc:"audit records in it"`
	Recordings int    `attr:"recordings" doc:"recordings in it"`
	Actor      string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran tandem disclose export (local:USER)"`
}

func (b DisclosureExportedEvent) Event() Event { return build(DisclosureExported, b) }

// TenantHandoverEvent: a tenant's audit records and recordings were
// written, encrypted to the tenant's key, at the end of its contract.
type TenantHandoverEvent struct {
	Tenant     string `attr:"contract_tenant" doc:"the tenant handed over (an attribute: the record is the gateway's, so that it outlives the tenant's keys)"`
	Recipient  string `attr:"recipient" doc:"the key it is encrypted to: its kind and fingerprint"`
	Path       string `attr:"path" doc:"the encrypted file written"`
	SHA256     string `attr:"sha256" doc:"SHA-256 (hex) of the encrypted file"`
	Records    int    `attr:"records" doc:"audit records in it"`
	Recordings int    `attr:"recordings" doc:"recordings in it"`
	By         string `attr:"by" role:"operator" doc:"the person who handed it over (--by)"`
	Actor      string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran tandem tenant handover (local:USER)"`
}

func (b TenantHandoverEvent) Event() Event { return build(TenantHandover, b) }

// TenantDestroyEvent: a step of destroying a tenant's data after its
// hand-over: asked for by one person, confirmed by a second, done.
type TenantDestroyEvent struct {
	Tenant        string `attr:"contract_tenant" doc:"the tenant whose data is destroyed (an attribute: the record is the gateway's, written after the tenant's keys are gone)"`
	Phase         string `attr:"phase" doc:"requested (the first person), confirmed (the second, before any key goes) or done"`
	By            string `attr:"by" role:"operator" doc:"the person of this step (--by)"`
	KeysDestroyed int    `attr:"keys_destroyed,omitempty" doc:"data keys destroyed (done); each is in the retention state as destroyed, not one key.destroyed each: those would be the tenant's records, under keys that are gone"`
	Files         int    `attr:"files,omitempty" doc:"recording files removed (done)"`
	Actor         string `attr:"actor,omitempty" role:"operator" doc:"the local user who ran tandem tenant destroy (local:USER)"`
}

func (b TenantDestroyEvent) Event() Event { return build(TenantDestroy, b) }
