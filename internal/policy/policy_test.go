package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/config"
)

// date builds a config.Date from YYYY-MM-DD; it panics on a typo in a test.
func date(s string) config.Date {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return config.Date{Time: t}
}

// at is a fixed instant in UTC: "2026-06-15 12:00".
func at(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// testNow is the default clock reading of the tables.
var testNow = at("2026-06-15 12:00")

func makeKey(t testing.TB, pub any, added string) *config.Key {
	t.Helper()
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("ssh.NewPublicKey: %v", err)
	}
	return &config.Key{
		Key:         strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))),
		Added:       date(added),
		PublicKey:   sp,
		Fingerprint: ssh.FingerprintSHA256(sp),
	}
}

// skECDSAKey returns a FIDO2 key (sk-ecdsa-sha2-nistp256@openssh.com) as
// a security key would register it: an ECDSA P-256 point and the
// application "ssh:". The private half stays on the token, so none is made.
func skECDSAKey(t testing.TB, added string) *config.Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := k.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	wire := ssh.Marshal(struct {
		Name, Curve string
		Point       []byte
		Application string
	}{ssh.KeyAlgoSKECDSA256, "nistp256", point.Bytes(), "ssh:"})
	sp, err := ssh.ParsePublicKey(wire)
	if err != nil {
		t.Fatalf("parse sk key: %v", err)
	}
	return &config.Key{
		Key:         strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))),
		Added:       date(added),
		PublicKey:   sp,
		Fingerprint: ssh.FingerprintSHA256(sp),
	}
}

func ecdsaKey(t testing.TB, added string) *config.Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return makeKey(t, &k.PublicKey, added)
}

func rsaKey(t testing.TB, bits int, added string) *config.Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return makeKey(t, &k.PublicKey, added)
}

func ed25519Key(t testing.TB, added string) *config.Key {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return makeKey(t, pub, added)
}

// goodObligations are met on testNow for every kind of role.
func goodObligations() config.Obligations {
	return config.Obligations{
		ConfidentialitySigned: date("2025-01-01"),
		TrainingValidUntil:    date("2027-06-30"),
		ContractUntil:         date("2027-12-31"),
		NDASigned:             date("2025-01-02"),
	}
}

func person(id string, roles ...string) *config.Person {
	return &config.Person{ID: id, Name: id, Roles: roles, Obligations: goodObligations()}
}

// testConfig is a small estate: two tenants, every environment, labels and
// globs, an external role and a forwarding role.
func testConfig() *config.Config {
	return &config.Config{
		Tenants: []config.Tenant{{ID: "acme"}, {ID: "globex"}},
		Hosts: []config.Host{
			{Name: "db1", Address: "10.0.0.1:22", Tenant: "acme", Environment: config.Production, Labels: map[string]string{"role": "db"}},
			{Name: "web1", Tenant: "acme", Environment: config.Test, Labels: map[string]string{"role": "web"}},
			{Name: "stg1", Tenant: "acme", Environment: config.Staging, RealData: true},
			{Name: "stg2", Tenant: "acme", Environment: config.Staging},
			{Name: "app1", Tenant: "globex", Environment: config.Production},
			{Name: "app2", Tenant: "globex", Environment: config.Test, Logins: []string{"deploy"}},
			{Name: "lab-1", Tenant: "globex", Environment: config.Test},
			{Name: "lab-2", Tenant: "globex", Environment: config.Test},
			{Name: "db2", Tenant: "globex", Environment: config.Test, Labels: map[string]string{"role": "db", "tier": "gold"}},
		},
		Roles: []config.Role{
			{ID: "acme-admin", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "acme"}, Logins: []string{"root", "deploy"}}}},
			{ID: "tester", Allow: []config.Rule{{Hosts: config.Selector{Environment: config.Test}, Logins: []string{"tester"}}}},
			{ID: "dba", Allow: []config.Rule{{Hosts: config.Selector{Labels: map[string]string{"role": "db", "tier": "gold"}}, Logins: []string{"postgres"}}}},
			{ID: "lab", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"nomatch", "lab-*"}}, Logins: []string{"ubuntu"}}}},
			{ID: "globex-deploy", Allow: []config.Rule{{Hosts: config.Selector{Tenant: "globex", Environment: config.Test}, Logins: []string{"deploy", "root"}}}},
			{ID: "ext", External: true, Allow: []config.Rule{
				{Hosts: config.Selector{Tenant: "globex"}, Logins: []string{"root"}},
				{Hosts: config.Selector{Tenant: "acme"}, Logins: []string{"root"}},
			}},
			{ID: "fwd", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"*"}}, Forward: []string{"*.internal:5432", "db1:5432", "[::1]:8080", "cache[12]:6379"}}}},
			{ID: "fwd-test", Allow: []config.Rule{{Hosts: config.Selector{Environment: config.Test}, Forward: []string{"pg.internal:5432"}}}},
			{ID: "fwd-web", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"web*"}}, Forward: []string{"cache.internal:6379"}}}},
			{ID: "conf-only", Requires: []string{"confidentiality"}, Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"web1"}}, Logins: []string{"root"}}}},
			{ID: "odd-ob", Requires: []string{"confidentiality", "blood-oath"}, Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"web1"}}, Logins: []string{"root"}}}},
			{ID: "empty-sel", Allow: []config.Rule{{Logins: []string{"root"}}}},
			{ID: "bad-glob", Allow: []config.Rule{{Hosts: config.Selector{Names: []string{"[web1"}}, Logins: []string{"root"}, Forward: []string{"[x:1"}}}},
		},
	}
}

func TestAuthorize(t *testing.T) {
	fresh := ecdsaKey(t, "2026-06-01")
	rsa2048 := rsaKey(t, 2048, "2026-06-01")
	rsa3072 := rsaKey(t, 3072, "2026-06-01")
	expired := ecdsaKey(t, "2025-10-03") // expires 2026-04-01 under 180 days
	warned := ecdsaKey(t, "2025-12-22")  // expires 2026-06-20: inside the 14-day window on testNow
	edKey := ed25519Key(t, "2026-06-01")
	noDate := ecdsaKey(t, "2026-06-01")
	noDate.Added = config.Date{}
	textOnly := ecdsaKey(t, "2026-06-01")
	textOnly.PublicKey, textOnly.Fingerprint = nil, ""
	garbage := &config.Key{Key: "ssh-ecdsa not-a-key", Added: date("2026-06-01")}

	with := func(p *config.Person, f func(*config.Obligations)) *config.Person {
		f(&p.Obligations)
		return p
	}
	// Access requests of alice for root on db1 from 11:00 to 13:00, one
	// without terminals and one with (--tty), and one of the external.
	window := RequestWindow{ID: "r-plain", Requester: "alice", Hosts: []string{"db1", "web1"}, Login: "root",
		From: at("2026-06-15 11:00"), Until: at("2026-06-15 13:00"), Approved: true}
	ttyWindow := window
	ttyWindow.ID, ttyWindow.TTY = "r-tty", true
	externalWindow := window
	externalWindow.ID, externalWindow.Requester, externalWindow.Hosts = "r-ext", "xavier", []string{"app1"}
	edit := func(w RequestWindow, f func(*RequestWindow)) RequestWindow {
		w.Hosts = slices.Clone(w.Hosts)
		f(&w)
		return w
	}

	type row struct {
		name     string
		cfg      func(*config.Config)
		person   *config.Person
		key      *config.Key
		host     string // looked up in the config; "" leaves Host nil
		login    string
		action   Action
		pty      bool
		fwd      string
		requests []RequestWindow
		now      time.Time // zero: testNow
		lock     string
		want     Verdict
		request  string   // Decision.Request
		terminal bool     // Decision.Terminal
		reason   []string // substrings of Reason
		hint     string   // substring of Hint
		warning  string   // substring of some Warning; "" requires no warnings
	}
	rows := []row{
		// Grants.
		{name: "default deny: no roles", person: person("nobody"), key: fresh, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"nobody has no access to host web1"}, hint: "ask for a role that grants web1"},
		{name: "default deny: role grants other tenant", person: person("alice", "acme-admin"), key: fresh, host: "app1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"alice has no access to host app1"}, hint: "ask for a role that grants app1"},
		{name: "grant by tenant, test host", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "deploy", action: ActionShell, want: Allow},
		{name: "grant by environment", person: person("tess", "tester"), key: fresh, host: "lab-2", login: "tester", action: ActionExec, want: Allow},
		{name: "grant by environment: not production", person: person("tess", "tester"), key: fresh, host: "db1", login: "tester", action: ActionShell,
			want: Deny, reason: []string{"tess has no access to host db1"}},
		{name: "grant by labels: all must match", person: person("dora", "dba"), key: fresh, host: "db2", login: "postgres", action: ActionSFTP, want: Allow},
		{name: "grant by labels: one label missing", person: person("dora", "dba"), key: fresh, host: "db1", login: "postgres", action: ActionShell,
			want: Deny, reason: []string{"dora has no access to host db1"}},
		{name: "grant by names glob", person: person("lars", "lab"), key: fresh, host: "lab-1", login: "ubuntu", action: ActionShell, want: Allow},
		{name: "names glob does not match", person: person("lars", "lab"), key: fresh, host: "web1", login: "ubuntu", action: ActionShell,
			want: Deny, reason: []string{"has no access to host web1"}},
		{name: "tenant and environment both required", person: person("gary", "globex-deploy"), key: fresh, host: "app1", login: "deploy", action: ActionShell,
			want: Deny, reason: []string{"gary has no access to host app1"}},
		{name: "wrong login lists granted", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "postgres", action: ActionShell,
			want: Deny, reason: []string{"alice may not log in as postgres on web1 (granted: deploy, root)"}},
		{name: "host restricts logins", person: person("gary", "globex-deploy"), key: fresh, host: "app2", login: "root", action: ActionExec,
			want: Deny, reason: []string{"gary may not log in as root on app2 (granted: deploy)"}},
		{name: "host restricts logins: listed one allowed", person: person("gary", "globex-deploy"), key: fresh, host: "app2", login: "deploy", action: ActionExec, want: Allow},
		{name: "empty selector matches nothing", person: person("eve", "empty-sel"), key: fresh, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"no access to host web1"}},
		{name: "malformed glob matches nothing", person: person("eve", "bad-glob"), key: fresh, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"no access to host web1"}},
		{name: "unknown role id grants nothing", person: person("alice", "no-such-role"), key: fresh, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"no access"}},
		{name: "empty login", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "", action: ActionShell,
			want: Deny, reason: []string{"no login given"}},
		{name: "nil host", person: person("alice", "acme-admin"), key: fresh, login: "root", action: ActionShell,
			want: Deny, reason: []string{"no such host"}},
		{name: "unknown action", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: "x11",
			want: Deny, reason: []string{`unknown action "x11"`}},
		{name: "nil key: grants only", person: person("alice", "acme-admin"), host: "web1", login: "root", action: ActionShell, want: Allow},

		// Obligations.
		{name: "confidentiality missing", person: with(person("alice", "acme-admin"), func(o *config.Obligations) { o.ConfidentialitySigned = config.Date{} }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Deny, reason: []string{"no signed confidentiality commitment on record"}},
		{name: "confidentiality signed in the future", person: with(person("alice", "acme-admin"), func(o *config.Obligations) { o.ConfidentialitySigned = date("2026-06-16") }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Deny, reason: []string{"confidentiality commitment is dated 2026-06-16"}},
		{name: "confidentiality signed today", person: with(person("alice", "acme-admin"), func(o *config.Obligations) { o.ConfidentialitySigned = date("2026-06-15") }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Allow},
		{name: "training missing", person: with(person("alice", "acme-admin"), func(o *config.Obligations) { o.TrainingValidUntil = config.Date{} }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Deny, reason: []string{"no data-protection training on record"}},
		{name: "training expired yesterday", person: with(person("alice", "acme-admin"), func(o *config.Obligations) { o.TrainingValidUntil = date("2026-06-14") }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Deny, reason: []string{"data-protection training expired on 2026-06-14"}},
		{name: "training valid on its last day, late evening", person: with(person("alice", "acme-admin"), func(o *config.Obligations) { o.TrainingValidUntil = date("2026-06-15") }),
			key: fresh, host: "web1", login: "root", action: ActionShell, now: at("2026-06-15 23:59"), want: Allow},
		{name: "training last day compared in UTC", person: with(person("alice", "acme-admin"), func(o *config.Obligations) { o.TrainingValidUntil = date("2026-06-15") }),
			key: fresh, host: "web1", login: "root", action: ActionShell,
			now: time.Date(2026, 6, 16, 1, 0, 0, 0, time.FixedZone("CEST", 2*3600)), want: Allow},
		{name: "employee needs no contract", person: with(person("alice", "acme-admin"), func(o *config.Obligations) { o.ContractUntil, o.NDASigned = config.Date{}, config.Date{} }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Allow},
		{name: "external needs contract and nda", person: with(person("xavier", "ext"), func(o *config.Obligations) { o.ContractUntil, o.NDASigned = config.Date{}, config.Date{} }),
			key: fresh, host: "lab-1", login: "root", action: ActionShell, want: Deny, reason: []string{"no contract on record", "no signed NDA on record"}},
		{name: "external contract ended", person: with(person("xavier", "ext"), func(o *config.Obligations) { o.ContractUntil = date("2026-05-31") }),
			key: fresh, host: "lab-1", login: "root", action: ActionShell, want: Deny, reason: []string{"contract ended on 2026-05-31"}},
		{name: "external contract valid on last day", person: with(person("xavier", "ext"), func(o *config.Obligations) { o.ContractUntil = date("2026-06-15") }),
			key: fresh, host: "lab-1", login: "root", action: ActionShell, pty: true, want: NeedsSecondPerson},
		{name: "external nda dated tomorrow", person: with(person("xavier", "ext"), func(o *config.Obligations) { o.NDASigned = date("2026-06-16") }),
			key: fresh, host: "lab-1", login: "root", action: ActionShell, want: Deny, reason: []string{"NDA is dated 2026-06-16"}},
		{name: "explicit requires replaces default", person: with(person("carl", "conf-only"), func(o *config.Obligations) { o.TrainingValidUntil = config.Date{} }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Allow},
		{name: "requires of all roles add up", person: with(person("carl", "conf-only", "tester"), func(o *config.Obligations) { o.TrainingValidUntil = config.Date{} }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Deny, reason: []string{"no data-protection training on record"}},
		{name: "unknown obligation fails closed", person: person("olga", "odd-ob"), key: fresh, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{`unknown obligation "blood-oath"`}},
		{name: "person without roles still needs baseline", person: with(person("nobody"), func(o *config.Obligations) { *o = config.Obligations{} }),
			key: fresh, host: "web1", login: "root", action: ActionShell, want: Deny, reason: []string{"no signed confidentiality commitment on record; no data-protection training on record"}},

		// Keys.
		{name: "rsa 2048 denied", person: person("alice", "acme-admin"), key: rsa2048, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"RSA with 2048 bits", "at least 3072"}},
		{name: "rsa 3072 allowed", person: person("alice", "acme-admin"), key: rsa3072, host: "web1", login: "root", action: ActionShell, want: Allow},
		{name: "ed25519 allowed under bsi", person: person("alice", "acme-admin"), key: edKey, host: "web1", login: "root", action: ActionShell, want: Allow},
		{name: "ed25519 denied under strict", cfg: func(c *config.Config) { c.Gateway.CryptoProfile = "strict" },
			person: person("alice", "acme-admin"), key: edKey, host: "web1", login: "root", action: ActionShell, want: Deny, reason: []string{"Ed25519"}},
		{name: "key expired", person: person("alice", "acme-admin"), key: expired, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"key " + expired.Fingerprint + " expired on 2026-04-01 (registered 2025-10-03, maximum age 180 days)"},
			hint: "register a new key with your administrator"},
		{name: "key expired at the first instant of its expiry day", person: person("alice", "acme-admin"), key: expired, host: "web1", login: "root", action: ActionShell,
			now: at("2026-04-01 00:00"), want: Deny, reason: []string{"expired on 2026-04-01"}},
		{name: "key valid on the last instant before expiry", person: person("alice", "acme-admin"), key: expired, host: "web1", login: "root", action: ActionShell,
			now: at("2026-03-31 23:59"), want: Allow, warning: "expires on 2026-04-01"},
		{name: "key in warn window", person: person("alice", "acme-admin"), key: warned, host: "web1", login: "root", action: ActionShell,
			want: Allow, warning: "your key " + warned.Fingerprint + " expires on 2026-06-20"},
		{name: "key warning travels with a deny", person: person("alice", "acme-admin"), key: warned, host: "app1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"no access"}, warning: "expires on 2026-06-20"},
		{name: "key fresh: no warning", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionShell, want: Allow},
		{name: "custom max age", cfg: func(c *config.Config) { c.Policy.KeyMaxAge = config.Duration{Duration: 10 * 24 * time.Hour} },
			person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"expired on 2026-06-11 (registered 2026-06-01, maximum age 10 days)"}},
		{name: "custom warn window", cfg: func(c *config.Config) { c.Policy.KeyWarn = config.Duration{Duration: 170 * 24 * time.Hour} },
			person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionShell,
			want: Allow, warning: "expires on 2026-11-28"},
		{name: "key without added date", person: person("alice", "acme-admin"), key: noDate, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"no registration date"}},
		{name: "key parsed from text", person: person("alice", "acme-admin"), key: textOnly, host: "web1", login: "root", action: ActionShell, want: Allow},
		{name: "unreadable key", person: person("alice", "acme-admin"), key: garbage, host: "web1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"could not be read"}},

		// Lock.
		{name: "locked", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionShell, lock: "left the company\non 2026-06-01",
			want: Deny, reason: []string{"your account is locked: left the company on 2026-06-01"}, hint: "unlock"},

		// Four-eyes: a shell (M6).
		{name: "production shell needs second person", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionShell, pty: true,
			want: NeedsSecondPerson, reason: []string{"db1 is a production host: interactive work needs a second person (four-eyes)"}, hint: "ssh -t gw join"},
		{name: "production shell without a terminal denied", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"db1 is a production host: a shell needs a terminal and a second person joined to it (four-eyes)"}, hint: "ssh -t gw join ID"},
		{name: "production shell without a terminal: no request covers it", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionShell,
			requests: []RequestWindow{ttyWindow}, want: Deny, reason: []string{"a shell needs a terminal"}, hint: "`ssh -t`"},
		{name: "production shell: a request does not replace the second person", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionShell, pty: true,
			requests: []RequestWindow{ttyWindow}, want: NeedsSecondPerson},
		{name: "four-eyes keeps the key warning", person: person("alice", "acme-admin"), key: warned, host: "db1", login: "root", action: ActionShell, pty: true,
			want: NeedsSecondPerson, warning: "expires on 2026-06-20"},
		{name: "grant checked before four-eyes", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "postgres", action: ActionShell, pty: true,
			want: Deny, reason: []string{"may not log in as postgres on db1"}},
		{name: "staging with real data needs second person", person: person("alice", "acme-admin"), key: fresh, host: "stg1", login: "root", action: ActionShell, pty: true,
			want: NeedsSecondPerson, reason: []string{"stg1 is a staging host with real data"}},
		{name: "staging without real data: alone", person: person("alice", "acme-admin"), key: fresh, host: "stg2", login: "root", action: ActionShell, pty: true, want: Allow},
		{name: "test: shell without a terminal alone", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionShell, want: Allow},
		{name: "custom list: all staging", cfg: func(c *config.Config) { c.Policy.FourEyes = []string{"production", "staging"} },
			person: person("alice", "acme-admin"), key: fresh, host: "stg2", login: "root", action: ActionShell, pty: true, want: NeedsSecondPerson},
		{name: "custom list: test only, production alone", cfg: func(c *config.Config) { c.Policy.FourEyes = []string{"test"} },
			person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionShell, pty: true, want: Allow},

		// Four-eyes: a command with a terminal.
		{name: "production exec with terminal needs second person", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec, pty: true,
			want: NeedsSecondPerson, reason: []string{"db1 is a production host: a command with a terminal is interactive work and needs a second person (four-eyes)"},
			hint: "ssh -t gw join ID"},
		{name: "production exec with terminal under a request without tty denied", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec, pty: true,
			requests: []RequestWindow{window}, want: Deny,
			reason: []string{"db1 is a production host: request r-plain covers commands without a terminal only"},
			hint:   "run Ansible with `pipelining = True` or ssh without -t, or work in a four-eyes session (`ssh -t`), or request again with --tty"},
		{name: "production exec with terminal under a tty request allowed", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec, pty: true,
			requests: []RequestWindow{ttyWindow}, want: Allow, request: "r-tty", terminal: true},
		{name: "exec with terminal: a tty request wins over an earlier plain one", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec, pty: true,
			requests: []RequestWindow{window, ttyWindow}, want: Allow, request: "r-tty", terminal: true},
		{name: "exec with terminal: expired tty request", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec, pty: true,
			requests: []RequestWindow{ttyWindow}, now: at("2026-06-15 14:00"), want: NeedsSecondPerson},
		{name: "test: exec with terminal alone", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionExec, pty: true, want: Allow},

		// Four-eyes: work without a terminal (M8).
		{name: "production exec needs approval", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec,
			want: NeedsApproval, reason: []string{"db1 is a production host: non-interactive access needs an approved access request"},
			hint: `ssh gw request --hosts db1 --login root --for 1h --reason "…"`},
		{name: "production exec under a request allowed", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec,
			requests: []RequestWindow{window}, want: Allow, request: "r-plain"},
		{name: "production exec under a tty request: no terminal recorded", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec,
			requests: []RequestWindow{ttyWindow}, want: Allow, request: "r-tty"},
		{name: "production exec under an expired request", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec,
			requests: []RequestWindow{window}, now: at("2026-06-15 14:00"), want: NeedsApproval},
		{name: "production exec under a request not yet approved", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec,
			requests: []RequestWindow{edit(window, func(w *RequestWindow) { w.Approved = false })}, want: NeedsApproval},
		{name: "production exec under another person's request", person: person("bob", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionExec,
			requests: []RequestWindow{window}, want: NeedsApproval},
		{name: "production exec under another login's request", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "deploy", action: ActionExec,
			requests: []RequestWindow{window}, want: NeedsApproval, hint: "--login deploy"},
		{name: "production exec under another host's request", person: person("alice", "acme-admin"), key: fresh, host: "stg1", login: "root", action: ActionExec,
			requests: []RequestWindow{window}, want: NeedsApproval, reason: []string{"stg1 is a staging host with real data"}},
		{name: "a request grants no login", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "postgres", action: ActionExec,
			requests: []RequestWindow{edit(window, func(w *RequestWindow) { w.Login = "postgres" })}, want: Deny, reason: []string{"may not log in as postgres on db1"}},
		{name: "production sftp needs approval", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "deploy", action: ActionSFTP,
			want: NeedsApproval, hint: "--login deploy"},
		{name: "production sftp under a request allowed", person: person("alice", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionSFTP, pty: true,
			requests: []RequestWindow{window}, want: Allow, request: "r-plain"},
		{name: "staging with real data exec needs approval", person: person("alice", "acme-admin"), key: fresh, host: "stg1", login: "root", action: ActionExec, want: NeedsApproval},
		{name: "test: exec alone, no request recorded", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionExec,
			requests: []RequestWindow{edit(window, func(w *RequestWindow) { w.Hosts = []string{"web1"} })}, want: Allow},
		{name: "custom list: test only", cfg: func(c *config.Config) { c.Policy.FourEyes = []string{"test"} },
			person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionSFTP, want: NeedsApproval},

		// Externals are always supervised (M7).
		{name: "external owner on production denied", person: person("xavier", "ext"), key: fresh, host: "app1", login: "root", action: ActionShell, pty: true,
			want: Deny, reason: []string{"app1 is a production host: an external expert may not own a session there"}, hint: "ssh -t gw join"},
		{name: "external exec on staging real data denied", person: person("xavier", "ext"), key: fresh, host: "stg1", login: "root", action: ActionExec,
			want: Deny, reason: []string{"external expert"}},
		{name: "external with employee role still external", person: person("xavier", "ext", "acme-admin"), key: fresh, host: "db1", login: "root", action: ActionShell, pty: true,
			want: Deny, reason: []string{"external expert"}},
		{name: "external on production: a request never covers", person: person("xavier", "ext"), key: fresh, host: "app1", login: "root", action: ActionExec,
			requests: []RequestWindow{externalWindow}, want: Deny, reason: []string{"an external expert may not own a session there"}},
		{name: "external on test host: shell with terminal needs an employee", person: person("xavier", "ext"), key: fresh, host: "lab-1", login: "root", action: ActionShell, pty: true,
			want: NeedsSecondPerson, reason: []string{"external experts work only under supervision"}, hint: "ask an employee with access to lab-1 to join with `ssh -t gw join ID`"},
		{name: "external on test host: exec with terminal needs an employee", person: person("xavier", "ext"), key: fresh, host: "lab-1", login: "root", action: ActionExec, pty: true,
			want: NeedsSecondPerson},
		{name: "external on test host: shell without terminal denied", person: person("xavier", "ext"), key: fresh, host: "lab-1", login: "root", action: ActionShell,
			want: Deny, reason: []string{"external experts work only under supervision: open a terminal session (ssh -t) and ask an employee to join it"}, hint: "ssh -t -J gw root@lab-1"},
		{name: "external on test host: exec denied", person: person("xavier", "ext"), key: fresh, host: "lab-1", login: "root", action: ActionExec,
			want: Deny, reason: []string{"external experts work only under supervision"}},
		{name: "external on test host: exec under a request denied", person: person("xavier", "ext"), key: fresh, host: "lab-1", login: "root", action: ActionExec,
			requests: []RequestWindow{edit(externalWindow, func(w *RequestWindow) { w.Hosts = []string{"lab-1"} })}, want: Deny, reason: []string{"only under supervision"}},
		{name: "external on test host: sftp denied", person: person("xavier", "ext"), key: fresh, host: "lab-1", login: "root", action: ActionSFTP, pty: true,
			want: Deny, reason: []string{"external experts work only under supervision"}},
		{name: "external on test host: forward denied", person: person("xavier", "ext", "fwd"), key: fresh, host: "lab-1", login: "root", action: ActionForward, fwd: "pg.internal:5432",
			want: Deny, reason: []string{"external experts work only under supervision"}},
		{name: "external: grants checked first", person: person("xavier", "ext"), key: fresh, host: "web1", login: "tester", action: ActionShell, pty: true,
			want: Deny, reason: []string{"xavier may not log in as tester on web1"}},

		// Forwarding (M4): it leaves from the target.
		{name: "forward without a host denied", person: person("fred", "fwd", "tester"), key: fresh, action: ActionForward, fwd: "pg.internal:5432",
			want: Deny, reason: []string{"port forwarding needs a host route: the forward leaves from the target"}, hint: "ssh -J gw -L 5432:localhost:5432 root@db1"},
		{name: "forward allowed by glob", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "pg.internal:5432", want: Allow},
		{name: "forward host compared case-insensitively", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "PG.Internal:5432", want: Allow},
		{name: "forward ipv6 literal", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "[::1]:8080", want: Allow},
		{name: "forward glob class", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "cache2:6379", want: Allow},
		{name: "forward glob class: outside", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "cache3:6379", want: Deny},
		{name: "forward wrong port", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "pg.internal:5433",
			want: Deny, reason: []string{"fred may not forward to pg.internal:5433 from web1"}, hint: "ask for a role whose rule for web1 lists pg.internal:5433 in forward"},
		{name: "forward other host", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "example.com:5432", want: Deny},
		{name: "forward without forward rule", person: person("alice", "acme-admin"), key: fresh, host: "web1", login: "root", action: ActionForward, fwd: "pg.internal:5432",
			want: Deny, reason: []string{"alice may not forward to pg.internal:5432 from web1"}},
		{name: "forward needs the login on the host", person: person("fred", "fwd"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "pg.internal:5432",
			want: Deny, reason: []string{"fred may not log in as tester on web1"}},
		{name: "forward with a login not granted", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "root", action: ActionForward, fwd: "pg.internal:5432",
			want: Deny, reason: []string{"fred may not log in as root on web1"}},
		{name: "forward malformed destination", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "pg.internal",
			want: Deny, reason: []string{"not host:port"}},
		{name: "forward port out of range", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "pg.internal:99999", want: Deny},
		{name: "forward on a host: selector must match", person: person("fred", "fwd-web", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "cache.internal:6379", want: Allow},
		{name: "forward on a host: selector does not match", person: person("fred", "fwd-web", "acme-admin"), key: fresh, host: "stg2", login: "root", action: ActionForward, fwd: "cache.internal:6379",
			want: Deny, reason: []string{"may not forward to cache.internal:6379 from stg2"}},
		{name: "forward rule for test hosts on a test host", person: person("alice", "acme-admin", "fwd-test"), key: fresh, host: "web1", login: "root", action: ActionForward, fwd: "pg.internal:5432", want: Allow},
		{name: "forward rule for test hosts tried on a production host", person: person("alice", "acme-admin", "fwd-test"), key: fresh, host: "db1", login: "root", action: ActionForward, fwd: "pg.internal:5432",
			requests: []RequestWindow{window}, want: Deny, reason: []string{"alice may not forward to pg.internal:5432 from db1"}},
		{name: "forward on a production host needs approval", person: person("alice", "acme-admin", "fwd"), key: fresh, host: "db1", login: "root", action: ActionForward, fwd: "db1:5432",
			want: NeedsApproval, reason: []string{"db1 is a production host: non-interactive access needs an approved access request"}},
		{name: "forward on a production host under a request", person: person("alice", "acme-admin", "fwd"), key: fresh, host: "db1", login: "root", action: ActionForward, fwd: "db1:5432",
			requests: []RequestWindow{window}, want: Allow, request: "r-plain"},
		{name: "forward to a production host's name from a test host", person: person("fred", "fwd", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "db1:5432", want: Allow},
		{name: "forward malformed glob matches nothing", person: person("eve", "bad-glob", "tester"), key: fresh, host: "web1", login: "tester", action: ActionForward, fwd: "x:1", want: Deny},
	}
	if len(rows) < 30 {
		t.Fatalf("table has %d rows, want at least 30", len(rows))
	}

	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			e := New(cfg)
			var host *config.Host
			if tc.host != "" {
				for i := range cfg.Hosts {
					if cfg.Hosts[i].Name == tc.host {
						host = &cfg.Hosts[i]
					}
				}
				if host == nil {
					t.Fatalf("test host %q not in config", tc.host)
				}
			}
			now := tc.now
			if now.IsZero() {
				now = testNow
			}
			d := e.Authorize(Request{Person: tc.person, Key: tc.key, Host: host, Login: tc.login,
				Action: tc.action, PTY: tc.pty, ForwardTo: tc.fwd, Now: now, Lock: tc.lock, Requests: tc.requests})
			if d.Verdict != tc.want {
				t.Fatalf("verdict %v, want %v (reason %q)", d.Verdict, tc.want, d.Reason)
			}
			if d.Request != tc.request || d.Terminal != tc.terminal {
				t.Errorf("request %q terminal %v, want %q %v", d.Request, d.Terminal, tc.request, tc.terminal)
			}
			if d.Verdict == Allow && d.Reason != "" {
				t.Errorf("Allow with reason %q", d.Reason)
			}
			if d.Verdict != Allow && d.Reason == "" {
				t.Errorf("%v without a reason", d.Verdict)
			}
			if strings.ContainsAny(d.Reason+d.Hint, "\n\r") {
				t.Errorf("reason or hint spans lines: %q / %q", d.Reason, d.Hint)
			}
			for _, s := range tc.reason {
				if !strings.Contains(d.Reason, s) {
					t.Errorf("reason %q does not contain %q", d.Reason, s)
				}
			}
			if !strings.Contains(d.Hint, tc.hint) {
				t.Errorf("hint %q does not contain %q", d.Hint, tc.hint)
			}
			if tc.warning == "" && len(d.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", d.Warnings)
			}
			if tc.warning != "" && !strings.Contains(strings.Join(d.Warnings, "\n"), tc.warning) {
				t.Errorf("warnings %q do not contain %q", d.Warnings, tc.warning)
			}
		})
	}
}

func TestCheckPersonNil(t *testing.T) {
	e := New(testConfig())
	if d := e.CheckPerson(nil, nil, testNow, ""); d.Verdict != Deny {
		t.Fatalf("nil person: %v", d.Verdict)
	}
	if d := e.Authorize(Request{Action: ActionShell, Now: testNow}); d.Verdict != Deny {
		t.Fatalf("empty request: %v", d.Verdict)
	}
	if d := New(nil).Authorize(Request{Person: person("alice", "acme-admin"), Host: &config.Host{Name: "x", Environment: config.Test},
		Login: "root", Action: ActionShell, Now: testNow}); d.Verdict != Deny {
		t.Fatalf("nil config: %v", d.Verdict)
	}
}

func TestFourEyes(t *testing.T) {
	tests := []struct {
		name string
		list []string
		host config.Host
		want bool
	}{
		{"default production", nil, config.Host{Environment: config.Production}, true},
		{"default staging real data", nil, config.Host{Environment: config.Staging, RealData: true}, true},
		{"default staging", nil, config.Host{Environment: config.Staging}, false},
		{"default test", nil, config.Host{Environment: config.Test}, false},
		{"default test with real data", nil, config.Host{Environment: config.Test, RealData: true}, false},
		{"unknown environment fails closed", nil, config.Host{Environment: "prod"}, true},
		{"custom staging", []string{"staging"}, config.Host{Environment: config.Staging}, true},
		{"custom staging: production not listed", []string{"staging"}, config.Host{Environment: config.Production}, false},
		{"custom test real data", []string{"test:real_data"}, config.Host{Environment: config.Test, RealData: true}, true},
		{"custom test real data: without", []string{"test:real_data"}, config.Host{Environment: config.Test}, false},
		{"unknown qualifier read strictly", []string{"test:whatever"}, config.Host{Environment: config.Test}, true},
		{"full list staging", []string{config.Production, config.Staging, config.Test}, config.Host{Environment: config.Staging}, true},
		{"full list test", []string{config.Production, config.Staging, config.Test}, config.Host{Environment: config.Test}, true},
		{"unknown environment fails closed whatever the list", []string{config.Test}, config.Host{Environment: "qa"}, true},
		{"empty environment fails closed", []string{config.Test}, config.Host{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(&config.Config{Policy: config.Policy{FourEyes: tc.list}})
			if got := e.FourEyes(&tc.host); got != tc.want {
				t.Errorf("FourEyes = %v, want %v", got, tc.want)
			}
		})
	}
	if !New(nil).FourEyes(nil) {
		t.Error("FourEyes(nil) = false; a missing host must fail closed")
	}
}

// TestFourEyesExampleConfig reads the documented example the way the
// gateway does: defaults filled by the config package, decided here.
func TestFourEyesExampleConfig(t *testing.T) {
	c, err := config.Load("../config/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := New(c)
	tests := []struct {
		host string
		want bool
	}{
		{"db1", true},
		{"pg-stage", true},
		{"test1", false},
	}
	for _, tc := range tests {
		if got := e.FourEyes(c.Host(tc.host)); got != tc.want {
			t.Errorf("FourEyes(%s) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

func TestGrants(t *testing.T) {
	e := New(testConfig())
	got := e.Grants(person("alice", "acme-admin", "lab", "globex-deploy"))
	want := []Grant{
		{Host: "app2", Tenant: "globex", Environment: config.Test, Logins: []string{"deploy"}},
		{Host: "db1", Tenant: "acme", Environment: config.Production, Logins: []string{"deploy", "root"}, FourEyes: true},
		{Host: "db2", Tenant: "globex", Environment: config.Test, Logins: []string{"deploy", "root"}},
		{Host: "lab-1", Tenant: "globex", Environment: config.Test, Logins: []string{"deploy", "root", "ubuntu"}},
		{Host: "lab-2", Tenant: "globex", Environment: config.Test, Logins: []string{"deploy", "root", "ubuntu"}},
		{Host: "stg1", Tenant: "acme", Environment: config.Staging, Logins: []string{"deploy", "root"}, FourEyes: true},
		{Host: "stg2", Tenant: "acme", Environment: config.Staging, Logins: []string{"deploy", "root"}},
		{Host: "web1", Tenant: "acme", Environment: config.Test, Logins: []string{"deploy", "root"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Grants:\n got %+v\nwant %+v", got, want)
	}
	if g := e.Grants(person("nobody")); len(g) != 0 {
		t.Errorf("Grants for a person without roles: %+v", g)
	}
	if g := e.Grants(nil); len(g) != 0 {
		t.Errorf("Grants(nil): %+v", g)
	}
}

func TestKeyExpiry(t *testing.T) {
	k := &config.Key{Added: date("2025-10-03")}
	if got, want := New(nil).KeyExpiry(k), at("2026-04-01 00:00"); !got.Equal(want) {
		t.Errorf("default KeyExpiry = %v, want %v", got, want)
	}
	e := New(&config.Config{Policy: config.Policy{KeyMaxAge: config.Duration{Duration: 30 * 24 * time.Hour}}})
	if got, want := e.KeyExpiry(k), at("2025-11-02 00:00"); !got.Equal(want) {
		t.Errorf("KeyExpiry = %v, want %v", got, want)
	}
	if !e.KeyExpiry(nil).IsZero() {
		t.Error("KeyExpiry(nil) not zero")
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Deny: "deny", Allow: "allow", NeedsSecondPerson: "needs-second-person",
		NeedsApproval: "needs-approval", Verdict(9): "verdict(9)"} {
		if got := v.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(v), got, want)
		}
	}
}

// TestFallbacksAreConfigDefaults: a Config built in code without policy
// values gets the very defaults the config package fills when loading.
func TestFallbacksAreConfigDefaults(t *testing.T) {
	e := New(&config.Config{})
	tests := []struct {
		name      string
		got, want any
	}{
		{"key max age", e.keyMaxAge(), time.Duration(config.DefaultKeyMaxAge)},
		{"key warn", e.keyWarn(), time.Duration(config.DefaultKeyWarn)},
		{"max request", e.MaxRequestDuration(), time.Duration(config.DefaultMaxRequest)},
		{"approvers", e.ApproversNeeded([]*config.Host{{Environment: config.Production}}), config.DefaultApprovers},
		{"four-eyes list", strings.Join(defaultFourEyes, ","), strings.Join(config.DefaultFourEyes(), ",")},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestDecisionMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Decision
		want string
	}{
		{"allow", Decision{Verdict: Allow}, ""},
		{"reason only", Decision{Verdict: Deny, Reason: "no grant"}, "no grant"},
		{"reason and hint", Decision{Verdict: Deny, Reason: "no grant", Hint: "ssh gw request"}, "no grant\n  ssh gw request"},
		{"warnings are not part of it", Decision{Verdict: Deny, Reason: "r", Warnings: []string{"w"}}, "r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.d.Message(); got != tc.want {
				t.Errorf("Message() = %q, want %q", got, tc.want)
			}
		})
	}
}
