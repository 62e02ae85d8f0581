package audit

import "tandem.dev/tandem/internal/vault"

// Attribute keys: the names in Event.Attrs. Events are built with the
// typed constructors (events.go), whose struct tags name these keys; a
// test checks that the tags and this list agree, so a key exists once,
// here, and in docs/AUDIT.md. Readers of the log (reports, tests) use the
// constants instead of spelling keys again.
//
// The names are part of the log's format: auditors filter on them, and
// old records keep them, so a key is never renamed.
const (
	KeyAction              = "action"
	KeyAlready             = "already"
	KeyActor               = "actor"
	KeyAnchorRoot          = "anchor_root"
	KeyAnchorSize          = "anchor_size"
	KeyApprovals           = "approvals"
	KeyAttempt             = "attempt"
	KeyAttempts            = "attempts"
	KeyBy                  = "by"
	KeyByUnknown           = "by_unknown"
	KeyCA                  = "ca"
	KeyCaseTenant          = "case_tenant"
	KeyBytesErr            = "bytes_err"
	KeyBytesIn             = "bytes_in"
	KeyBytesOut            = "bytes_out"
	KeyChanges             = "changes"
	KeyChannel             = "channel"
	KeyCheckpointCutBytes  = "checkpoint_cut_bytes"
	KeyClass               = "class"
	KeyClosed              = "closed"
	KeyCoHolders           = "co_holders"
	KeyCommand             = "command"
	KeyComment             = "comment"
	KeyConfigDigest        = "config_digest"
	KeyConnectionClosed    = "connection_closed"
	KeyContractTenant      = "contract_tenant"
	KeyContact             = "contact"
	KeyCount               = "count"
	KeyCutBytes            = "cut_bytes"
	KeyDay                 = "day"
	KeyDestination         = "destination"
	KeyDigest              = "digest"
	KeyDropped             = "dropped"
	KeyDPO                 = "dpo"
	KeyDuration            = "duration"
	KeyEntity              = "entity"
	KeyError               = "error"
	KeyEvicted             = "evicted"
	KeyExitSignal          = "exit_signal"
	KeyExitStatus          = "exit_status"
	KeyExpires             = "expires"
	KeyExtension           = "extension"
	KeyExternal            = "external"
	KeyFilter              = "filter"
	KeyFourEyes            = "four_eyes"
	KeyHosts               = "hosts"
	KeyHave                = "have"
	KeyID                  = "id"
	KeyIssued              = "issued"
	KeyIssuedBy            = "issued_by"
	KeyKey                 = "key"
	KeyKeyID               = "key_id"
	KeyKeys                = "keys"
	KeyKeysDestroyed       = "keys_destroyed"
	KeyKeysMore            = "keys_more"
	KeyKind                = "kind"
	KeyLeafCutBytes        = "leaf_cut_bytes"
	KeyLeavesRebuilt       = "leaves_rebuilt"
	KeyLegalBasis          = "legal_basis"
	KeyLimit               = "limit"
	KeyListen              = "listen"
	KeyListing             = "listing"
	KeyLocks               = "locks"
	KeyLogin               = "login"
	KeyLostBytes           = "lost_bytes"
	KeyLostFrom            = "lost_from"
	KeyLostTo              = "lost_to"
	KeyMax                 = "max"
	KeyMethod              = "method"
	KeyMethods             = "methods"
	KeyMode                = "mode"
	KeyNewKey              = "new_key"
	KeyNode                = "node"
	KeyNewPrefix           = "new." // config.change: new.<field> per changed field
	KeyNote                = "note"
	KeyOldKey              = "old_key"
	KeyOldPrefix           = "old." // config.change: old.<field> per changed field
	KeyOutcome             = "outcome"
	KeyOwner               = "owner"
	KeyParticipant         = "participant"
	KeyPerMinute           = "per_minute"
	KeyPeriod              = "period"
	KeyPhase               = "phase"
	KeyPreviousDigest      = "previous_digest"
	KeyPrevious            = "previous"
	KeyReason              = "reason"
	KeyRecording           = "recording"
	KeyRecordingError      = "recording_error"
	KeyRecordingFileSHA256 = "recording_file_sha256"
	KeyRecordingSHA256     = "recording_sha256"
	KeyRecipient           = "recipient"
	KeyRecipientKey        = "recipient_key"
	KeyRecordings          = "recordings"
	KeyRecords             = "records"
	KeyRef                 = "ref"
	KeyRefusedBy           = "refused_by"
	KeyRenewed             = "renewed"
	KeyRepaired            = "repaired"
	KeyRequestApprovals    = "request_approvals"
	KeyRequester           = "requester"
	KeyRequestRef          = "request_ref"
	KeyRequests            = "requests"
	KeyRewrapped           = "rewrapped"
	KeyRoot                = "root"
	KeyRow                 = "row"
	KeyRows                = "rows"
	KeyRowsFailed          = "rows_failed"
	KeySampledRequests     = "sampled_requests"
	KeySampledSessions     = "sampled_sessions"
	KeyScope               = "scope"
	KeySeed                = "seed"
	KeySealFailed          = "seal_failed"
	KeySealed              = "sealed"
	KeySealedBytes         = "sealed_bytes"
	KeySealedFileSHA256    = "sealed_file_sha256"
	KeySealedFlag          = "sealed_flag"
	KeySealedInput         = "sealed_input"
	KeySealedKeystrokes    = "sealed_keystrokes"
	KeySealedPrompts       = "sealed_prompts"
	KeySegment             = "segment"
	KeySerial              = "serial"
	KeySharedAlready       = "shared_already"
	KeySharedRewrapped     = "shared_rewrapped"
	KeySize                = "size"
	KeySHA256              = "sha256"
	KeyFiles               = "files"
	KeyPath                = "path"
	KeyAuditRecords        = "audit_records"
	KeySourceAddress       = "source_address"
	KeySources             = "sources"
	KeyStage               = "stage"
	KeyStderrBytes         = "stderr_bytes"
	KeyStderrSHA256        = "stderr_sha256"
	KeyStderrStoredBytes   = "stderr_stored_bytes"
	KeyStdinBytes          = "stdin_bytes"
	KeyStdinSHA256         = "stdin_sha256"
	KeyStdinStoredBytes    = "stdin_stored_bytes"
	KeyStdoutBytes         = "stdout_bytes"
	KeyStdoutSHA256        = "stdout_sha256"
	KeyStdoutStoredBytes   = "stdout_stored_bytes"
	KeyTTY                 = "tty"
	KeyTable               = "table"
	KeyTenants             = "tenants"
	KeyTerminal            = "terminal"
	KeyTimeout             = "timeout"
	KeyTop                 = "top"
	KeyTrigger             = "trigger"
	KeyTruncated           = "truncated"
	KeyUntil               = "until"
	KeyUser                = "user"
	KeyUserBytes           = "user_bytes"
	KeyUserSHA256          = "user_sha256"
	KeyValidAfter          = "valid_after"
	KeyValidUntil          = "valid_until"
	KeyValue               = "value"
	KeyVerdict             = "verdict"
	KeyJoinMode            = "join_mode"
	KeyRelayedBy           = "relayed_by"
	KeyVersion             = "version"
	KeyVia                 = "via"
	KeyWasBlocked          = "was_blocked"
	KeyWhat                = "what"
	KeyWitnessCutBytes     = "witness_cut_bytes"
)

// attrClass is the retention class of every attribute that is not admin
// (docs/RETENTION.md): what a client sends about itself before it is
// anyone, and what a person typed that is not an identity. Each key has
// one class in every event type, so a shredded class never leaves half an
// attribute behind. A key added above is admin until it is listed here.
var attrClass = map[string]vault.Class{
	// Operational: the client before authentication, and connection metadata.
	KeyUser:       vault.Operational, // the user name a client sent, cut
	KeyUserSHA256: vault.Operational, // … its hash matches attempts, as long as the name is kept
	KeyUserBytes:  vault.Operational,
	KeyKeys:       vault.Operational, // keys offered before authentication
	KeyKeysMore:   vault.Operational,
	KeyMethods:    vault.Operational, // methods tried before authentication
	KeyTop:        vault.Operational, // source addresses with counts
	// Content: what a person typed.
	KeyCommand: vault.Content,
	KeyComment: vault.Content,
}

// ClassOf returns the retention class of an attribute key: the class whose
// part of a v2 record carries it, and whose key shreds it.
func ClassOf(key string) vault.Class {
	if c, ok := attrClass[key]; ok {
		return c
	}
	return vault.Admin
}
