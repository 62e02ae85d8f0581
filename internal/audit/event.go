// Package audit is the one interface through which every part of Tandem
// records what happened (M9, M12), and the tamper-evident log behind it (M10).
package audit

import (
	"context"
	"time"
)

// Type names an audit event. The dotted names are stable: auditors filter
// on them and reports count them.
type Type string

// Event types. Later issues add more; names follow "area.verb".
const (
	AuthSuccess   Type = "auth.success"
	AuthFailure   Type = "auth.failure"
	SessionStart  Type = "session.start"
	SessionEnd    Type = "session.end"
	SessionDenied Type = "session.denied"
	// Four-eyes session life cycle (M6, M7).
	SessionWaiting Type = "session.waiting"
	SessionLive    Type = "session.live"
	SessionPaused  Type = "session.paused"
	SessionResumed Type = "session.resumed"
	SessionEnded   Type = "session.ended" // why the shared session ended; session.end follows with the exit status
	SessionJoin    Type = "session.join"
	SessionLeave   Type = "session.leave"
	Exec           Type = "exec"
	ForwardDenied  Type = "forward.denied"
	// ChannelLimited: a client exceeded a cap on what it may send before
	// its session starts (M30); once per channel, attrs limit, kind, max,
	// and closed=true when the gateway closed the channel for it.
	ChannelLimited Type = "channel.limited"
	ForwardStart   Type = "forward.start"
	ForwardEnd     Type = "forward.end"
	Command        Type = "command" // a gateway command such as whoami
	// Access requests (M8).
	RequestCreate   Type = "request.create"
	RequestApprove  Type = "request.approve"
	RequestDeny     Type = "request.deny"
	RequestRevoke   Type = "request.revoke"
	RequestExpired  Type = "request.expired"  // a live session ended because its request ran out
	RecordingRead   Type = "recording.read"   // a recording was replayed or listed in detail (M13)
	RecordingExport Type = "recording.export" // a recording left the gateway as a file
	Lock            Type = "lock"
	Unlock          Type = "unlock"
	Freeze          Type = "freeze"          // a host, tenant or label was frozen after a finding (M27)
	Unfreeze        Type = "unfreeze"        // a freeze was lifted
	AuthBlocked     Type = "auth.blocked"    // a source or person exceeded the failure limit (M19)
	AuthUnblocked   Type = "auth.unblocked"  // an operator lifted a block early (`tandem unblock`)
	AuthSuppressed  Type = "auth.suppressed" // pre-authentication events dropped by the per-source audit budget (M19)
	ConfigChange    Type = "config.change"
	ConfigReload    Type = "config.reload" // who reloaded the configuration; config.change events follow (M12)
	AuditRead       Type = "audit.read"    // a person read audit events through the gateway (ssh gw audit show)
	GatewayStart    Type = "gateway.start"
	GatewayStop     Type = "gateway.stop"
	LogCheckpoint   Type = "log.checkpoint"
	LogRecovered    Type = "log.recovered"
	LogSegment      Type = "log.segment"      // the first record of a segment started by tandem audit recover
	LogKeyHandover  Type = "log.key_handover" // the checkpoint signing key was handed over (tandem audit rotate-key)
	// CosignRefused: this node, as a witness, refused a peer's checkpoint.
	CosignRefused Type = "cosign.refused"
	// The local state (M5, M8): a row of state.db that failed its integrity
	// check and was not honoured, and rows sealed by the state key's creator
	// or an operator.
	StateForged   Type = "state.forged"
	StateResealed Type = "state.resealed"
	// OutboxInvalid: an event queued by another process could not be read.
	OutboxInvalid Type = "outbox.invalid"
	// CARotated: a step of a CA rotation (tandem ca rotate).
	CARotated Type = "ca.rotated"
	// KEKRotated: the data keys moved to a new key-encryption key (tandem
	// kek rotate).
	KEKRotated Type = "kek.rotated"
	// Retention (M14): a data key destroyed, an extension of the
	// operational period, legal holds and the DPO's notices.
	KeyDestroyed      Type = "key.destroyed"
	RetentionExtended Type = "retention.extended"
	RetentionHold     Type = "retention.hold"
	RetentionReleased Type = "retention.released"
	RetentionNotice   Type = "retention.notice"
	// BreakglassUsed (M26): an emergency certificate was issued while the
	// gateway was down; imported from its signed record afterwards.
	BreakglassUsed Type = "breakglass.used"
	// BackupCreated: a backup of the data directory was written (M21).
	BackupCreated Type = "backup.created"
	// ReportCreated (M24): an evidence report of a tenant or an access
	// report of a person was written.
	ReportCreated Type = "report.created"
	// Spot checks (M29): items drawn for review, and a reviewer's verdict.
	ReviewSampled Type = "review.sampled"
	ReviewVerdict Type = "review.verdict"
	// Lawful disclosure (M15): a case asked for, each approval, and the
	// encrypted export once two persons approved.
	DisclosureRequested Type = "disclosure.requested"
	DisclosureApproved  Type = "disclosure.approved"
	DisclosureExported  Type = "disclosure.exported"
	// Contract end (M23): a tenant's data handed over, and destroyed by
	// two persons.
	TenantHandover Type = "tenant.handover"
	TenantDestroy  Type = "tenant.destroy"
)

// Event is one audit record. Fields that do not apply stay empty. Source
// addresses are operational data with a shorter retention (M14); they are
// kept in their own field so that retention can drop them.
type Event struct {
	Time    time.Time         `json:"time"`
	Type    Type              `json:"type"`
	Person  string            `json:"person,omitempty"`
	Session string            `json:"session,omitempty"`
	Tenant  string            `json:"tenant,omitempty"`
	Host    string            `json:"host,omitempty"`
	Login   string            `json:"login,omitempty"`
	Source  string            `json:"source,omitempty"`
	Request string            `json:"request,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// Sink accepts events. Append returns only once the event is stored
// durably; an error means it was not, and the caller must not carry out
// the action the event describes (fail closed).
type Sink interface {
	Append(ctx context.Context, e Event) error
}
