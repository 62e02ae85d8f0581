// Package config holds Tandem's one declarative configuration file: the
// gateway's own settings and the master data (tenants, persons, roles, hosts).
//
// A file is parsed and validated whole. A file with any problem is refused
// with every problem listed as file:line: reason, so that a reload never
// half-applies a change. The types here are also the domain types that the
// policy package decides on; they carry no behaviour that needs I/O.
package config

import (
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/ca"
)

// Config is a validated configuration. Values returned by Load or Parse are
// complete: defaults are filled in and every cross reference resolves.
type Config struct {
	Gateway   Gateway   `yaml:"gateway"`
	Policy    Policy    `yaml:"policy"`
	Audit     Audit     `yaml:"audit"`
	Recording Recording `yaml:"recording"`
	Retention Retention `yaml:"retention"`
	Syslog    Syslog    `yaml:"syslog"`
	Backup    Backup    `yaml:"backup"`
	Cluster   Cluster   `yaml:"cluster"`
	// Store is where the state is (docs/HA.md).
	Store   Store    `yaml:"store"`
	Tenants []Tenant `yaml:"tenants"`
	Persons []Person `yaml:"persons"`
	Roles   []Role   `yaml:"roles"`
	Hosts   []Host   `yaml:"hosts"`

	// Monitoring and Log: the gateway's health, metrics and own log.
	Monitoring Monitoring `yaml:"monitoring"`
	Log        Log        `yaml:"log"`

	// Path is the file the configuration was read from ("" when parsed
	// from memory). Relative paths in the file are resolved against its
	// directory.
	Path string `yaml:"-"`

	// raw is the file as read, for Digest; byKey maps a key's SHA256
	// fingerprint to where it is registered, for PersonByKey. Both are
	// filled by Parse.
	raw   []byte
	byKey map[string]keyRef
}

// Gateway holds the settings of the gateway process itself.
type Gateway struct {
	// Listen is the SSH listen address. It must name an address
	// explicitly; 0.0.0.0 and [::] are accepted only as written.
	Listen string `yaml:"listen"`
	// DataDir holds state (SQLite), keys (0600) and later audit data.
	DataDir string `yaml:"data_dir"`
	// CryptoProfile is one of bsi (default), strict, compat.
	CryptoProfile string `yaml:"crypto_profile"`
	// KeyType is the type of the keys the gateway makes for itself (host
	// key, user CA, host CA): ecdsa-p384 (default) or ecdsa-p256. Keys
	// that exist keep their type; a CA rotation makes the next key of
	// this type.
	KeyType ca.KeyType `yaml:"key_type"`
	// Names are the host names under which clients reach the gateway;
	// they become the principals of the gateway's host certificate.
	// Default: the host part of Listen and "localhost".
	Names []string `yaml:"names"`
	// CertValidity is how long a per-session target certificate is valid.
	// Default 5m, maximum 5m (M2).
	CertValidity Duration `yaml:"cert_validity"`
	// HandshakeTimeout bounds the unauthenticated phase of a connection.
	// Default 20s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// DialTimeout bounds connecting to a target. Default 10s.
	DialTimeout Duration `yaml:"dial_timeout"`
	// KeepAlive is the interval of keep-alive probes on client
	// connections; a client that misses three is dropped. Default 3s.
	KeepAlive Duration `yaml:"keepalive"`
	// EnvAllow lists environment variable names (globs) a client may pass
	// to the target. Default: LANG, LC_*, TZ. Validation refuses names
	// and globs that reach injection-prone variables (DangerousEnv).
	EnvAllow []string `yaml:"env_allow"`
	// MaxConnections caps concurrent client connections. Default 1000.
	MaxConnections int `yaml:"max_connections"`
	// Limits against brute force and connection floods (M19). Zero values
	// take the defaults documented in docs/CONFIG.md.
	Limits Limits `yaml:"limits"`
	// CAOverlap is how long a CA rotation publishes old and new CA before
	// the gateway signs with the new one (tandem ca rotate). Default 7d.
	CAOverlap Duration `yaml:"ca_overlap"`
	// ProxyProtocol names the load balancers whose PROXY protocol v2
	// headers are read (docs/HA.md). Off when empty.
	ProxyProtocol ProxyProtocol `yaml:"proxy_protocol"`
	// PublicAddress is host:port where clients reach the gateway when it
	// differs from Listen (a load balancer in front); client-config
	// prints it. Default: the first name and the port of Listen.
	PublicAddress string `yaml:"public_address"`
	// EgressAddresses are the addresses (or CIDR networks) the gateway
	// reaches targets from. When set, every per-session certificate
	// carries them as its source-address critical option, so a target's
	// sshd refuses the certificate from anywhere else (M20). Empty: no
	// option.
	EgressAddresses []string `yaml:"egress_addresses"`
}

// Limits bound failed logins and unauthenticated connections (M19).
type Limits struct {
	// Window is the sliding window failures are counted in. Default 10m.
	Window Duration `yaml:"window"`
	// FailuresPerSource blocks a source address after this many failed
	// connections within Window. Default 10.
	FailuresPerSource int `yaml:"failures_per_source"`
	// FailuresPerPerson blocks a person (from every source) after this many
	// failures within Window. Default 20.
	FailuresPerPerson int `yaml:"failures_per_person"`
	// Block is how long a block lasts. Default 15m.
	Block Duration `yaml:"block"`
	// Unauthenticated caps concurrent connections that have not yet
	// authenticated, in total (default 100) and per source (default 10).
	Unauthenticated          int `yaml:"unauthenticated"`
	UnauthenticatedPerSource int `yaml:"unauthenticated_per_source"`
	// UnauthenticatedPerPrefix caps them per network: IPv4 sources are
	// grouped by their first PrefixV4 bits (default 24), IPv6 sources by
	// PrefixV6 (default 64). Default 25.
	UnauthenticatedPerPrefix int `yaml:"unauthenticated_per_prefix"`
	PrefixV4                 int `yaml:"prefix_v4"`
	PrefixV6                 int `yaml:"prefix_v6"`
	// KexTimeout bounds the time until the client's version string and
	// key-exchange offer have arrived; after that, handshake_timeout
	// applies. A connection that lets it pass counts as a failure of its
	// source. Default 5s.
	KexTimeout Duration `yaml:"kex_timeout"`
	// EvictAfterSilence: when Unauthenticated is reached, a newcomer
	// takes the slot of the unauthenticated connection silent longest,
	// if its client has sent nothing for at least this long. Default 1s.
	EvictAfterSilence Duration `yaml:"evict_after_silence"`
	// ConnectionsPerPerson and ConnectionsPerSource cap authenticated
	// connections of one person and from one address. Defaults 20, 50.
	ConnectionsPerPerson int `yaml:"connections_per_person"`
	ConnectionsPerSource int `yaml:"connections_per_source"`
	// ChannelsPerConnection caps the channels open at once on one
	// connection. Default 10.
	ChannelsPerConnection int `yaml:"channels_per_connection"`
	// WaitingPerPerson caps one person's sessions waiting for a second
	// person at once. Default 3.
	WaitingPerPerson int `yaml:"waiting_per_person"`
	// PreauthAuditPerMinute caps audit events of unauthenticated
	// connections per source address and minute; the rest are counted in
	// an auth.suppressed event. Default 20.
	PreauthAuditPerMinute int `yaml:"preauth_audit_per_minute"`
	// Free space on data_dir's file system: below DiskWarnPercent or
	// DiskWarnMiB the gateway warns (default 10 %, 2048 MiB); below
	// DiskRefusePercent or DiskRefuseMiB it refuses new sessions
	// (default 2 %, 512 MiB). Checked every DiskCheckEvery (default 10s).
	DiskWarnPercent   int      `yaml:"disk_warn_percent"`
	DiskWarnMiB       int      `yaml:"disk_warn_mib"`
	DiskRefusePercent int      `yaml:"disk_refuse_percent"`
	DiskRefuseMiB     int      `yaml:"disk_refuse_mib"`
	DiskCheckEvery    Duration `yaml:"disk_check_every"`
}

// Audit configures the tamper-evident audit log (M10).
type Audit struct {
	// Origin is the first line of every checkpoint, naming this log.
	// Default "tandem/audit".
	Origin string `yaml:"origin"`
	// CheckpointEvery bounds how old the newest signed checkpoint may get
	// while events arrive. Default 10s.
	CheckpointEvery Duration `yaml:"checkpoint_every"`
	// CheckpointEvents forces a checkpoint after this many events. Default 1000.
	CheckpointEvents int `yaml:"checkpoint_events"`
	// WitnessFile receives a copy of every checkpoint. It must lie outside
	// data_dir (ideally on another disk or host mount), so that whoever can
	// rewrite the data directory cannot rewrite the history others saw.
	// serve refuses to start without it.
	WitnessFile string `yaml:"witness_file"`
	// SigningKey is the file with the checkpoint signing key: plain, or
	// age-encrypted to recording.age_identity. Default "tandem-audit.key"
	// beside the configuration file, created on first start. It must lie
	// outside data_dir: whoever can rewrite the log must not also be able
	// to re-sign it.
	SigningKey string `yaml:"signing_key"`
}

// Recording configures session recordings (M9, M16).
type Recording struct {
	// KEKFile holds the 32-byte key-encryption key that wraps the per-tenant,
	// per-day data keys. Default "tandem.kek" beside the configuration
	// file, created on first start. It must lie outside data_dir: nothing
	// in the data directory may be readable without it.
	KEKFile string `yaml:"kek_file"`
	// AgeIdentity, instead of KEKFile, names an age identity file whose
	// recipient wraps the data keys.
	AgeIdentity string `yaml:"age_identity"`
	// StreamCap is how many bytes of each exec stream (stdin, stdout,
	// stderr) are stored; beyond it only counts and SHA-256 are kept
	// (data minimisation). Default 1048576.
	StreamCap int64 `yaml:"stream_cap"`
	// Storage is where recordings go: local (default) keeps them in
	// data_dir/recordings; store keeps them in the state store's
	// PostgreSQL database (store.driver: postgres), so that every gateway
	// of a cluster lists, replays and exports what any of them recorded
	// (docs/HA.md). Every gateway then needs the same KEK (kek_file or
	// age_identity). Changes take effect at the next start.
	Storage string `yaml:"storage"`
}

// Recording storages.
const (
	RecordingLocal = "local"
	RecordingStore = "store"
)

// Policy holds rules that are not tied to one role.
type Policy struct {
	// FourEyes names the environments whose interactive work needs a
	// second person. Default: production, and staging when real_data.
	FourEyes []string `yaml:"four_eyes"`
	// KeyMaxAge is the maximum age of a registered personal key (M2).
	// Default 180 days.
	KeyMaxAge Duration `yaml:"key_max_age"`
	// KeyWarn is the window before expiry in which logins warn. Default 14 days.
	KeyWarn Duration `yaml:"key_warn"`
	// RequireFIDO2 lists environments whose hosts may be reached only with
	// a FIDO2 key (sk-ecdsa-sha2-nistp256@openssh.com, sk-ssh-ed25519@openssh.com).
	RequireFIDO2 []string `yaml:"require_fido2"`
	// WaitTimeout is how long a four-eyes session waits for a second
	// person before it closes. Default 10m.
	WaitTimeout Duration `yaml:"wait_timeout"`
	// Grace is how long a four-eyes session stays paused after its second
	// person left before it ends. Default 5m.
	Grace Duration `yaml:"grace"`
	// MaxRequestDuration caps the window an access request may ask for
	// (M8). Default 8h.
	MaxRequestDuration Duration `yaml:"max_request_duration"`
	// Approvers is, per environment, how many distinct persons must
	// approve an access request for hosts there (M8). Keys: production,
	// staging, test; values 1 to 5. Default 1 for every environment.
	Approvers map[string]int `yaml:"approvers"`
}

// Tenant is a customer of the hosting company.
type Tenant struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Contact is whom to notify of a lawful disclosure of the tenant's
	// data (an e-mail address or a name), unless a legal hold withholds
	// the notice. Optional.
	Contact string `yaml:"contact"`
	// Retention overrides the periods of retention for this tenant's
	// data; a period left out is the global one.
	Retention *Periods `yaml:"retention"`
	Line      int      `yaml:"-"`
}

// Retention sets how long Tenant keeps each class of data before its keys
// are destroyed (docs/RETENTION.md), within the bounds validation enforces.
type Retention struct {
	Periods `yaml:",inline"`
	// HoldMax is how long a legal hold lasts unless renewed. Default 180d.
	HoldMax Duration `yaml:"hold_max"`
	// DPO is where notices to the data protection officer go (an
	// extension of the operational period sends one).
	DPO DPO `yaml:"dpo"`
}

// Periods are retention periods per class, in whole days. Zero: not set
// (the default, or the global period for a tenant). Sealed follows
// Content unless set.
type Periods struct {
	Admin       Duration `yaml:"admin"`
	Operational Duration `yaml:"operational"`
	Content     Duration `yaml:"content"`
	Sealed      Duration `yaml:"sealed"`
}

// DPO configures notices to the data protection officer: by e-mail
// (SMTP with STARTTLS) or by a command that reads the notice on stdin.
type DPO struct {
	To      string   `yaml:"to"`
	From    string   `yaml:"from"`
	SMTP    *SMTP    `yaml:"smtp"`
	Command []string `yaml:"command"`
	// Timeout bounds one delivery attempt. Default 30s.
	Timeout Duration `yaml:"timeout"`
}

// SMTP is a mail server that takes DPO notices. STARTTLS is required:
// the notice names persons and incidents.
type SMTP struct {
	Addr string `yaml:"addr"`
	// CAFile holds the CA certificates (PEM) the server's certificate
	// must chain to; unset: the system's roots.
	CAFile string `yaml:"ca_file"`
	// StartTLS may only be "required" (the default).
	StartTLS string `yaml:"starttls"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (never in the configuration file,
	// never logged).
	PasswordFile string `yaml:"password_file"`
}

// Person is one natural person. There are no shared accounts.
type Person struct {
	ID          string      `yaml:"id"`
	Name        string      `yaml:"name"`
	Email       string      `yaml:"email"`
	Roles       []string    `yaml:"roles"`
	Keys        []Key       `yaml:"keys"`
	Obligations Obligations `yaml:"obligations"`
	// Account may only be "personal" (the default). Any other value, such
	// as shared, team, guest or anonymous, is refused.
	Account string `yaml:"account"`
	// AgeRecipient is the person's age recipient (age1…), optional: a
	// break-glass share is encrypted to it. Without it, shares go to the
	// person's ssh-ed25519 and ssh-rsa keys; ECDSA and FIDO keys cannot
	// receive age files, so their holders need one.
	AgeRecipient string `yaml:"age_recipient"`
	Line         int    `yaml:"-"`
}

// Key is a registered personal public key.
type Key struct {
	// Key is the key in authorized_keys format.
	Key string `yaml:"key"`
	// Added is the day the key was registered; expiry counts from it.
	Added Date `yaml:"added"`
	Line  int  `yaml:"-"`

	// PublicKey is Key parsed; Fingerprint is its SHA256 fingerprint.
	PublicKey   ssh.PublicKey `yaml:"-"`
	Fingerprint string        `yaml:"-"`
	Comment     string        `yaml:"-"`
}

// Obligations are the dated commitments that gate access.
type Obligations struct {
	ConfidentialitySigned Date `yaml:"confidentiality_signed"`
	TrainingValidUntil    Date `yaml:"training_valid_until"`
	ContractUntil         Date `yaml:"contract_until"`
	NDASigned             Date `yaml:"nda_signed"`
}

// Role is a named set of grants.
type Role struct {
	ID          string `yaml:"id"`
	Description string `yaml:"description"`
	// External marks external experts: they never own a session on a
	// four-eyes host and never count as the second person (M7).
	External bool `yaml:"external"`
	// Requires lists the obligations a holder must meet: confidentiality,
	// training, contract, nda. Default: confidentiality and training;
	// external roles add contract and nda.
	Requires []string `yaml:"requires"`
	// Permissions are gateway-wide rights: "lock" (lock and unlock
	// persons with `ssh gw lock`), "configure" (reload the
	// configuration file with `ssh gw reload`, recorded as theirs),
	// "hold" (legal holds), "freeze" (freeze hosts, tenants and
	// labels with `tandem freeze`), "disclose" (open and approve lawful
	// disclosure cases) and "dpo" (the data protection officer: approves
	// disclosure cases as the approver each one needs).
	Permissions []string `yaml:"permissions"`
	Allow       []Rule   `yaml:"allow"`
	Line        int      `yaml:"-"`
}

// Rule grants logins on the hosts its selector matches.
type Rule struct {
	Hosts  Selector `yaml:"hosts"`
	Logins []string `yaml:"logins"`
	// Forward lists destinations ("host:port", host may be a glob) that
	// port forwarding may reach. Empty: no forwarding.
	Forward []string `yaml:"forward"`
	// Join lists the modes in which holders may join other persons'
	// sessions on the matched hosts: peer (may type), observer (read-only).
	Join []string `yaml:"join"`
	// Approve lets holders approve access requests for the matched hosts.
	Approve bool `yaml:"approve"`
	// SFTPReadOnly makes the logins of this rule read-only for SFTP and
	// scp: writes, renames, removes and attribute changes are refused. A
	// login granted only by such rules gets the sftp subsystem and nothing
	// else: shells, commands (scp -O) and forwards are refused.
	SFTPReadOnly bool `yaml:"sftp_read_only"`
	// Read lets holders read and export recordings of sessions on the
	// matched hosts (M13).
	Read bool `yaml:"read"`
	// Audit lets holders read the audit events of the tenants whose hosts
	// the selector matches, with `ssh gw audit show` (M9): every event of
	// such a tenant, on any of its hosts. Events of no tenant (logins,
	// gateway start, configuration changes) are the operator's alone.
	Audit bool `yaml:"audit"`
	// Incident lets holders open a four-eyes terminal session on the
	// matched hosts while they are frozen (M27): the one way onto a
	// frozen host, for whoever handles the finding, and still only with
	// a second person joined.
	Incident bool `yaml:"incident"`
	Line     int  `yaml:"-"`
}

// Selector picks hosts. All given criteria must hold; a selector with no
// criterion is refused by validation (use names: ["*"] to mean all hosts).
type Selector struct {
	Tenant      string            `yaml:"tenant"`
	Environment string            `yaml:"environment"`
	Labels      map[string]string `yaml:"labels"`
	Names       []string          `yaml:"names"`
}

// Environments a host can be in.
const (
	Production = "production"
	Staging    = "staging"
	Test       = "test"
)

// Host is a target server.
type Host struct {
	Name        string            `yaml:"name"`
	Address     string            `yaml:"address"`
	Tenant      string            `yaml:"tenant"`
	Environment string            `yaml:"environment"`
	RealData    bool              `yaml:"real_data"`
	Labels      map[string]string `yaml:"labels"`
	// Logins optionally lists the target accounts that exist on the host;
	// when given, rules may grant only these.
	Logins []string `yaml:"logins"`
	// HostKey pins the target's host key; HostCA trusts host certificates
	// signed by that CA. Exactly one is required: no trust on first use.
	HostKey string `yaml:"host_key"`
	HostCA  string `yaml:"host_ca"`
	Line    int    `yaml:"-"`

	// Parsed forms of HostKey and HostCA (one is nil).
	HostPublicKey ssh.PublicKey `yaml:"-"`
	HostCAKey     ssh.PublicKey `yaml:"-"`
}

// Duration is a time.Duration written as "90s", "5m", "8h" or "180d".
type Duration struct{ time.Duration }

// Date is a calendar day written as YYYY-MM-DD, in UTC. The zero Date
// means "not set".
type Date struct{ time.Time }
