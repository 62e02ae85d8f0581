package audit

//go:generate go run ./cmd/auditdoc -o ../../docs/AUDIT.md -retention ../../docs/RETENTION-FIELDS.md

// specs is the catalog's hand-written half: for each type when it is
// written, the measures it serves and what its Person names. The fields
// come from the constructor (schema.go). Every Type of event.go is here
// (TestCatalogCoversEveryType), in the order of docs/AUDIT.md.
var specs = []Spec{
	// Logins.
	{Type: AuthSuccess, builder: AuthSuccessEvent{}, Measures: ms("M1", "M9"),
		When:       "A person's key was verified and the login may start; stored before it takes effect, or the login is refused.",
		PersonRole: "person", PersonDoc: "who logged in"},
	{Type: AuthFailure, builder: AuthFailureEvent{}, Measures: ms("M1", "M9", "M19"),
		When:       "A connection ended without authenticating (one event per connection, within the source's pre-authentication audit budget).",
		PersonRole: "person", PersonDoc: "whose registered key was refused after its signature was proven, if any"},
	{Type: AuthBlocked, builder: AuthBlockedEvent{}, Measures: ms("M19"),
		When:       "A source address or a person exceeded the failed-login limit and is blocked for a while.",
		PersonRole: "blocked", PersonDoc: "the person blocked (scope person)"},
	{Type: AuthUnblocked, builder: AuthUnblockedEvent{}, Measures: ms("M19"),
		When:       "The gateway lifted a block an operator asked to lift early (`tandem unblock`).",
		PersonRole: "unblocked", PersonDoc: "the person unblocked (scope person)"},
	{Type: AuthSuppressed, builder: AuthSuppressedEvent{}, Measures: ms("M19", "M30"),
		When: "Pre-authentication events were dropped because their sources used up their audit budget; written at the next flush with the counts."},

	// Sessions on targets.
	{Type: SessionStart, builder: SessionStartEvent{}, Measures: ms("M4", "M9"),
		When:       "A session (shell, exec, sftp) on a target was allowed; stored before the target is dialled, or the session is refused.",
		PersonRole: "owner", PersonDoc: "who started the session"},
	{Type: SessionDenied, builder: SessionDeniedEvent{}, Measures: ms("M4", "M5", "M9"),
		When:       "A session, channel or jump was refused: the policy said no, the host is unknown, a cap was reached, or the person may no longer work.",
		PersonRole: "person", PersonDoc: "who was refused"},
	{Type: SessionEnd, builder: SessionEndEvent{}, Measures: ms("M9"),
		When:       "A session on a target ended (also one that could not start after session.start); carries byte counts, exit status and the recording's hashes.",
		PersonRole: "owner", PersonDoc: "who started the session"},
	{Type: Exec, Measures: ms("M9"),
		When: "Not written by this version: commands on targets are session.start with action exec. Kept so that older records read."},

	// Four-eyes sessions.
	{Type: SessionWaiting, builder: SessionStateEvent{}, Measures: ms("M6", "M7"),
		When:       "A four-eyes session waits for a second person before the target is dialled.",
		PersonRole: "owner", PersonDoc: "who started the session"},
	{Type: SessionLive, builder: SessionStateEvent{}, Measures: ms("M6", "M7"),
		When:       "A qualified second person joined a waiting session; input flows.",
		PersonRole: "owner", PersonDoc: "who started the session"},
	{Type: SessionPaused, builder: SessionStateEvent{}, Measures: ms("M6"),
		When:       "The second person left; input stops until another joins or the grace period ends the session.",
		PersonRole: "owner", PersonDoc: "who started the session"},
	{Type: SessionResumed, builder: SessionStateEvent{}, Measures: ms("M6"),
		When:       "A second person joined a paused session again.",
		PersonRole: "owner", PersonDoc: "who started the session"},
	{Type: SessionEnded, builder: SessionStateEvent{}, Measures: ms("M6", "M9"),
		When:       "A shared session ended, with why; session.end follows with the exit status and hashes.",
		PersonRole: "owner", PersonDoc: "who started the session"},
	{Type: SessionJoin, builder: SessionJoinEvent{}, Measures: ms("M6", "M7", "M9"),
		When:       "A person joined a shared session (`ssh -t gw join ID`), as peer or observer.",
		PersonRole: "owner", PersonDoc: "who started the session (the joiner is participant)"},
	{Type: SessionLeave, builder: SessionLeaveEvent{}, Measures: ms("M6", "M9"),
		When:       "A person left a shared session, or was taken out (lock, reload).",
		PersonRole: "owner", PersonDoc: "who started the session (the one leaving is participant)"},

	// Forwards and hostile clients.
	{Type: ForwardStart, builder: ForwardStartEvent{}, Measures: ms("M4", "M9"),
		When:       "A port forward through a target was allowed; stored before the target is dialled, or the forward is refused.",
		PersonRole: "owner", PersonDoc: "who opened the forward"},
	{Type: ForwardEnd, builder: ForwardEndEvent{}, Measures: ms("M9"),
		When:       "A port forward ended; bytes per direction and the recording's hashes.",
		PersonRole: "owner", PersonDoc: "who opened the forward"},
	{Type: ForwardDenied, builder: ForwardDeniedEvent{}, Measures: ms("M4"),
		When:       "A port forward was refused by the policy, or agent, X11 or remote forwarding or another channel type was asked for (always refused; audited once per kind and channel, or connection for channel types and remote forwarding).",
		PersonRole: "person", PersonDoc: "who asked"},
	{Type: ChannelLimited, builder: ChannelLimitedEvent{}, Measures: ms("M30"),
		When:       "A client went past a cap on what it may send before its session starts; once per channel.",
		PersonRole: "person", PersonDoc: "whose connection it was"},

	// Gateway commands and access requests.
	{Type: Command, builder: CommandEvent{}, Measures: ms("M9", "M18"),
		When:       "A gateway command (`ssh gw whoami`, `join`, `approve` …) is about to run, or a line sent to the gateway that it refuses unread (unknown command, malformed, too long); stored first, or nothing runs. The outcome of a refused command shows in the absence of its transition (`request.approve`, `lock` …).",
		PersonRole: "person", PersonDoc: "who runs it"},
	{Type: RequestCreate, builder: RequestCreateEvent{}, Measures: ms("M8"),
		When:       "A person asked for time-boxed access (`ssh gw request`); the request is stored first.",
		PersonRole: "requester", PersonDoc: "who asked"},
	{Type: RequestApprove, builder: RequestApproveEvent{}, Measures: ms("M8"),
		When:       "A person approved a request; the approval is stored first.",
		PersonRole: "approver", PersonDoc: "who approved"},
	{Type: RequestDeny, builder: RequestDenyEvent{}, Measures: ms("M8"),
		When:       "A person denied a request; the denial is stored first.",
		PersonRole: "denier", PersonDoc: "who denied"},
	{Type: RequestRevoke, builder: RequestRevokeEvent{}, Measures: ms("M8"),
		When:       "A request was ended early; its live sessions end.",
		PersonRole: "revoker", PersonDoc: "who revoked"},
	{Type: RequestExpired, builder: RequestExpiredEvent{}, Measures: ms("M8"),
		When:       "A live session ended because the request it ran under ran out.",
		PersonRole: "owner", PersonDoc: "who started the session"},

	// Reading recordings.
	{Type: RecordingRead, builder: RecordingReadEvent{}, Measures: ms("M13"),
		When:       "A recording was replayed, or recordings were listed (`ssh gw recordings|replay`, `tandem recording list`, `tandem replay`); stored (or queued) before any byte leaves.",
		PersonRole: "reader", PersonDoc: "who reads, bound to their read grants"},
	{Type: RecordingExport, builder: RecordingExportEvent{}, Measures: ms("M13"),
		When:       "A recording left the gateway as a file (`ssh gw export`, `tandem recording export`); stored (or queued) before any byte leaves.",
		PersonRole: "reader", PersonDoc: "who exports, bound to their read grants"},

	// Reading the audit log.
	{Type: AuditRead, builder: AuditReadEvent{}, Measures: ms("M9", "M13"),
		When:       "A person read audit events with `ssh gw audit show`, bound to their audit grants per tenant; stored before any event is shown. Carries no tenant, so it is the operator's to read (`tandem audit show`).",
		PersonRole: "reader", PersonDoc: "who read"},

	// Locks.
	{Type: Lock, builder: LockEvent{}, Measures: ms("M5"),
		When:       "A person was locked (`tandem lock`, `ssh gw lock`); the gateway writes it from the store's lock events.",
		PersonRole: "locked", PersonDoc: "who was locked"},
	{Type: Unlock, builder: UnlockEvent{}, Measures: ms("M5"),
		When:       "A lock was lifted (`tandem unlock`, `ssh gw unlock`).",
		PersonRole: "unlocked", PersonDoc: "who was unlocked"},
	{Type: Freeze, builder: FreezeEvent{}, Measures: ms("M27"),
		When: "`tandem freeze` froze a host, tenant or label after a security finding; stored with the freeze, before any gateway applies it."},
	{Type: Unfreeze, builder: UnfreezeEvent{}, Measures: ms("M27"),
		When: "`tandem unfreeze` lifted a freeze."},

	// The gateway, its configuration and its log.
	{Type: ConfigReload, builder: ConfigReloadEvent{}, Measures: ms("M12"),
		When: "The configuration is reloaded (SIGHUP, `tandem reload --by PERSON`, `ssh gw reload`): who reloaded and how many config.change events follow; stored before they are and before the reload takes effect."},
	{Type: ConfigChange, builder: ConfigChangeEvent{}, Measures: ms("M12"),
		When: "A reload changed an entity of the configuration; one event per created, modified or deleted entity, stored before the reload takes effect."},
	{Type: GatewayStart, builder: GatewayStartEvent{}, Measures: ms("M9", "M12"),
		When: "`tandem serve` starts; stored (and a checkpoint signed) before it serves, or it does not."},
	{Type: GatewayStop, builder: GatewayStopEvent{}, Measures: ms("M9"),
		When: "`tandem serve` stopped serving (best effort)."},
	{Type: CARotated, builder: CARotatedEvent{}, Measures: ms("M2", "M12"),
		When: "A step of a CA rotation took effect (`tandem ca rotate --kind user|host` with no flag, `--finish`, `--retire`; or the gateway finishing a rotation whose overlap ended). Queued through the state store when run from the command line."},
	{Type: KEKRotated, builder: KEKRotatedEvent{}, Measures: ms("M14", "M16"),
		When: "`tandem kek rotate` wrapped every data key with a new key-encryption key (run again after an interruption, it counts the keys moved before); with recordings in the cluster's database, their copies of the data keys too. Queued through the state store; stored when the gateway starts with the new KEK."},
	{Type: LogCheckpoint, builder: LogCheckpointEvent{}, Measures: ms("M10"),
		When: "The log signed a checkpoint over the records before this one."},
	{Type: LogRecovered, builder: LogRecoveredEvent{}, Measures: ms("M10"),
		When: "Opening the log found the end of an interrupted write and repaired it; the first record after the repair."},
	{Type: LogKeyHandover, builder: LogKeyHandoverEvent{}, Measures: ms("M2", "M10"),
		When: "`tandem audit rotate-key` is handing the checkpoint signing key over; the next checkpoint, signed by both keys, is the hand-over that `tandem audit verify` follows."},
	{Type: CosignRefused, builder: CosignRefusedEvent{}, Measures: ms("M10", "M22"),
		When: "This node, witnessing a peer's audit log (`cluster`), refused one of its checkpoints; once per refused checkpoint. The peer's `/readyz` fails until it submits a checkpoint this node can co-sign."},
	{Type: LogSegment, builder: LogSegmentEvent{}, Measures: ms("M10"),
		When: "`tandem audit recover` closed a damaged segment and started a new one; the new segment's first record, naming the anchor and the gap."},

	// The local state.
	{Type: StateForged, builder: StateForgedEvent{}, Measures: ms("M5", "M8"),
		When:       "A row of state.db failed its integrity check (row MAC or the lock table's seal) and was not honoured; once per row and stored MAC.",
		PersonRole: "locked", PersonDoc: "the person of a forged lock row"},
	{Type: StateResealed, builder: StateResealedEvent{}, Measures: ms("M5", "M8"),
		When: "Rows of state.db were sealed wholesale: by the process that created the state key (rows from before sealing), or by an operator (`tandem locks --reseal`)."},
	{Type: OutboxInvalid, builder: OutboxInvalidEvent{}, Measures: ms("M9"),
		When: "An event another process queued for the log (the store's outbox) could not be read; it is recorded as this instead of being lost."},

	// Retention.
	{Type: KeyDestroyed, builder: KeyDestroyedEvent{}, Measures: ms("M14", "M16"),
		When: "The retention job (`tandem serve` daily, `tandem retention run`) destroyed a data key whose period was over; or a later run found a destruction whose event a crash lost (repaired)."},
	{Type: RetentionExtended, builder: RetentionExtendedEvent{}, Measures: ms("M14"),
		When: "`tandem retention extend` kept a tenant's operational data longer (at most 14 days); stored before it takes effect, with a notice to the DPO queued."},
	{Type: RetentionHold, builder: RetentionHoldEvent{}, Measures: ms("M14"),
		When:       "`tandem hold` placed a legal hold on a tenant, a person or a session, or `tandem hold renew` renewed one; stored before it takes effect.",
		PersonRole: "held", PersonDoc: "the person whose data is held (scope person)"},
	{Type: RetentionReleased, builder: RetentionReleasedEvent{}, Measures: ms("M14"),
		When: "`tandem hold release` released a legal hold."},
	{Type: RetentionNotice, builder: RetentionNoticeEvent{}, Measures: ms("M14"),
		When: "A notice to the data protection officer about an extension was delivered, or an attempt failed (retried with backoff)."},

	// Emergency access.
	{Type: BreakglassUsed, builder: BreakglassUsedEvent{}, Measures: ms("M26", "M9"),
		When:       "`tandem breakglass report` imported an emergency record: a certificate the emergency CA issued from two persons' shares while the gateway was down. Written when the gateway is back, with the time of issue in `issued`.",
		PersonRole: "holder", PersonDoc: "the first holder whose share was used (the others in co_holders)"},
	{Type: BackupCreated, builder: BackupCreatedEvent{}, Measures: ms("M21"),
		When: "A backup of the data directory was written and checked: by `tandem serve` on its schedule (`backup.every`) or by `tandem backup`."},

	// Audits.
	{Type: ReportCreated, builder: ReportCreatedEvent{}, Measures: ms("M24", "M13"),
		When:       "`tandem report` wrote an evidence report of a tenant or an access report of a person; queued through the state store before the file is written.",
		PersonRole: "subject", PersonDoc: "the person an access report is about"},
	{Type: ReviewSampled, builder: ReviewSampledEvent{}, Measures: ms("M29"),
		When: "`tandem review sample` drew sessions and access requests of a tenant at random for review; queued through the state store."},
	{Type: ReviewVerdict, builder: ReviewVerdictEvent{}, Measures: ms("M29"),
		When:       "A reviewer recorded a verdict on a drawn session or request (`ssh gw review record`); stored before the command answers.",
		PersonRole: "reviewer", PersonDoc: "who reviewed"},

	// Lawful disclosure.
	{Type: DisclosureRequested, builder: DisclosureRequestedEvent{}, Measures: ms("M15"),
		When:       "A person opened a disclosure case (`ssh gw disclose request`): scope, legal basis, recipient key, the tenant's contact; stored before the command answers.",
		PersonRole: "requester", PersonDoc: "who asked"},
	{Type: DisclosureApproved, builder: DisclosureApprovedEvent{}, Measures: ms("M15"),
		When:       "A person approved a disclosure case (`ssh gw disclose approve`); it is approved with two approvers, neither the requester, one of them with the dpo permission.",
		PersonRole: "approver", PersonDoc: "who approved"},
	{Type: DisclosureExported, builder: DisclosureExportedEvent{}, Measures: ms("M15"),
		When: "`tandem disclose export` wrote an approved case's records and recordings, encrypted to the recipient; queued through the state store before the file is written."},

	// Contract end.
	{Type: TenantHandover, builder: TenantHandoverEvent{}, Measures: ms("M23"),
		When: "`tandem tenant handover` wrote the tenant's audit records and recordings, encrypted to the tenant's key; queued through the state store before the file is written."},
	{Type: TenantDestroy, builder: TenantDestroyEvent{}, Measures: ms("M23", "M14"),
		When: "`tandem tenant destroy`: a first person asked for the destruction of a tenant's data after its hand-over (requested), a second confirmed it (confirmed, before any key goes), and every data key of the tenant was destroyed (done). Records of the gateway, not of the tenant: they outlive its keys."},
}

func ms(ids ...string) []string { return ids }
