package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// newKey returns a fresh ECDSA P-256 public key in authorized_keys form
// (without the trailing newline) and its parsed form.
func newKey(t testing.TB) (string, ssh.PublicKey) {
	t.Helper()
	return newKeyOn(t, elliptic.P256())
}

// newKeyOn returns a public key on curve in authorized_keys form, and parsed.
func newKeyOn(t testing.TB, curve elliptic.Curve) (string, ssh.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), pub
}

// newCert returns a user certificate in authorized_keys form.
func newCert(t testing.TB) string {
	t.Helper()
	_, pub := newKey(t)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: pub, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
}

func newEd25519(t testing.TB) string {
	t.Helper()
	pk, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// base is a small valid file. Cases below edit it by line number, so keep
// the numbering (shown on the right) in mind when changing it.
var base = []string{
	"tenants:",                               // 1
	"  - {id: t1, name: T1}",                 // 2
	"persons:",                               // 3
	"  - id: alice",                          // 4
	"    name: Alice",                        // 5
	"    email: alice@example.org",           // 6
	"    roles: [admin]",                     // 7
	"    keys:",                              // 8
	`      - {key: "K1", added: 2026-01-01}`, // 9
	"roles:",                                 // 10
	"  - id: admin",                          // 11
	"    allow:",                             // 12
	"      - hosts: {tenant: t1}",            // 13
	"        logins: [root]",                 // 14
	"hosts:",                                 // 15
	"  - name: db1",                          // 16
	"    address: 127.0.0.1:2201",            // 17
	"    tenant: t1",                         // 18
	"    environment: production",            // 19
	`    host_key: "HK"`,                     // 20
}

type keys struct{ k1, k2, hk, hk2, cert, ed string }

func newKeys(t testing.TB) keys {
	k1, _ := newKey(t)
	k2, _ := newKey(t)
	hk, _ := newKey(t)
	hk2, _ := newKey(t)
	return keys{k1: k1, k2: k2, hk: hk, hk2: hk2, cert: newCert(t), ed: newEd25519(t)}
}

// build returns base with lines replaced (1-based; a replacement may span
// several lines, which shifts later lines) and text appended.
func build(k keys, edits map[int]string, appendText string) []byte {
	lines := slices.Clone(base)
	for n, s := range edits {
		lines[n-1] = s
	}
	s := strings.Join(lines, "\n") + "\n" + appendText
	r := strings.NewReplacer(`"K1"`, `"`+k.k1+`"`, `"K2"`, `"`+k.k2+`"`, `"HK"`, `"`+k.hk+`"`,
		`"HK2"`, `"`+k.hk2+`"`, `"CERT"`, `"`+k.cert+`"`, `"ED"`, `"`+k.ed+`"`,
		`"OPT"`, `'from="127.0.0.1" `+k.k1+`'`)
	return []byte(r.Replace(s))
}

func problems(t *testing.T, err error) []Problem {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatal("ValidationError without problems")
	}
	return ve.Problems
}

func TestBaseIsValid(t *testing.T) {
	k := newKeys(t)
	if _, err := Parse("base.yaml", build(k, nil, "")); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenFiles(t *testing.T) {
	k := newKeys(t)
	tests := []struct {
		name  string
		edits map[int]string
		add   string
		raw   string // when set, the whole file
		line  int
		msg   string
	}{
		{name: "yaml syntax", edits: map[int]string{5: "    name: Alice: x"}, line: 5, msg: "mapping values are not allowed"},
		{name: "yaml syntax first line", raw: "a: b: c\n", line: 1, msg: "mapping values"},
		{name: "unknown key", edits: map[int]string{6: "    e-mail: alice@example.org"}, line: 6, msg: `unknown key "e-mail" in person`},
		{name: "unknown top-level key", add: "gatway: {}\n", line: 21, msg: `unknown key "gatway" in the top level`},
		{name: "wrong type", edits: map[int]string{7: "    roles: admin"}, line: 7, msg: "cannot unmarshal"},
		{name: "duplicate yaml key", edits: map[int]string{6: "    name: Alice2"}, line: 6, msg: `mapping key "name" already defined at line 5`},
		{name: "empty file", raw: "# nothing\n", line: 1, msg: "empty"},
		{name: "top level not a mapping", raw: "- a\n- b\n", line: 1, msg: "must be a mapping"},
		{name: "two documents", add: "---\ntenants: []\n", line: 21, msg: "only one YAML document"},
		{name: "crypto profile", add: "gateway:\n  crypto_profile: fancy\n", line: 22, msg: `unknown crypto profile "fancy"`},
		{name: "key type", add: "gateway:\n  key_type: ed25519\n", line: 22, msg: `key_type: unknown key type "ed25519"`},
		{name: "listen not host:port", add: "gateway:\n  listen: localhost\n", line: 22, msg: "is not host:port"},
		{name: "listen bad port", add: "gateway:\n  listen: 127.0.0.1:ssh\n", line: 22, msg: "must be a number from 1 to 65535"},
		{name: "listen without host", add: "gateway:\n  listen: \":2222\"\n", line: 22, msg: "must name an address"},
		{name: "gateway names empty entry", add: "gateway:\n  names: [gw, \"\"]\n", line: 22, msg: "names: entry 2 is empty"},
		{name: "cert validity too long", add: "gateway:\n  cert_validity: 10m\n", line: 22, msg: "longer than the maximum 5m"},
		{name: "cert validity zero", add: "gateway:\n  cert_validity: 0s\n", line: 22, msg: "cert_validity must be longer than 0"},
		{name: "cert validity negative", add: "gateway:\n  cert_validity: -1m\n", line: 22, msg: "cert_validity must be longer than 0"},
		{name: "bad duration", add: "gateway:\n  dial_timeout: 5 minutes\n", line: 22, msg: "invalid duration"},
		{name: "duration not scalar", add: "gateway:\n  keepalive: [1s]\n", line: 22, msg: "a duration must be a single value"},
		{name: "egress address host name", add: "gateway:\n  egress_addresses: [127.0.0.1, gw.example.org]\n", line: 22, msg: `egress_addresses: "gw.example.org" is not an address or a CIDR network`},
		{name: "egress address comma list", add: "gateway:\n  egress_addresses: [\"127.0.0.1,10.0.0.1\"]\n", line: 22, msg: `egress_addresses: "127.0.0.1,10.0.0.1" is not an address`},
		{name: "egress address host bits", add: "gateway:\n  egress_addresses: [192.0.2.7/28]\n", line: 22, msg: `has host bits set; write 192.0.2.0/28`},
		{name: "egress address zone", add: "gateway:\n  egress_addresses: [\"fe80::1%eth0\"]\n", line: 22, msg: `is not an address`},
		{name: "max connections zero", add: "gateway:\n  max_connections: 0\n", line: 22, msg: "max_connections must be at least 1"},
		{name: "env allow bad glob", add: "gateway:\n  env_allow: [\"LC_[\"]\n", line: 22, msg: "not a valid name or glob"},
		{name: "env allow everything", add: "gateway:\n  env_allow: [LANG, \"*\"]\n", line: 22, msg: `env_allow: "*" would let clients set BASH_ENV`},
		{name: "env allow L glob", add: "gateway:\n  env_allow: [\"L*\"]\n", line: 22, msg: `env_allow: "L*" would let clients set LD_PRELOAD`},
		{name: "env allow LD_", add: "gateway:\n  env_allow: [\"LD_*\"]\n", line: 22, msg: `"LD_*" would let clients set LD_PRELOAD`},
		{name: "env allow loader family", add: "gateway:\n  env_allow: [LD_BIND_NOW]\n", line: 22, msg: `would let clients set LD_BIND_NOW`},
		{name: "env allow PATH", add: "gateway:\n  env_allow: [PATH]\n", line: 22, msg: `would let clients set PATH`},
		{name: "env allow path suffix", add: "gateway:\n  env_allow: [\"*PATH\"]\n", line: 22, msg: `would let clients set CDPATH`},
		{name: "env allow python", add: "gateway:\n  env_allow: [\"PY*\"]\n", line: 22, msg: `would let clients set PYTHONPATH`},
		{name: "env allow TMPDIR", add: "gateway:\n  env_allow: [TMPDIR]\n", line: 22, msg: `would let clients set TMPDIR`},
		{name: "host address shared across environments", add: `  - {name: tst1, address: "127.0.0.1:2201", tenant: t1, environment: test, host_key: "HK2"}` + "\n", line: 21,
			msg: "host tst1: address 127.0.0.1:2201 is also the address of host db1 (line 16) in tenant t1, environment production"},
		{name: "host address shared, spelt differently", add: `  - {name: tst1, address: "DB1.example.org:22", tenant: t1, environment: test, host_key: "HK2"}` + "\n", edits: map[int]string{17: "    address: db1.example.org.:022"}, line: 21,
			msg: "address db1.example.org:22 is also the address of host db1"},
		{name: "four eyes unknown entry", add: "policy:\n  four_eyes: [production, staging, prod]\n", line: 22, msg: `unknown entry "prod"`},
		{name: "four eyes without production", add: "policy:\n  four_eyes: [staging]\n", line: 22, msg: "must include production"},
		{name: "four eyes without staging", add: "policy:\n  four_eyes: [production]\n", line: 22, msg: "must include staging:real_data"},
		{name: "key warn not shorter", add: "policy:\n  key_max_age: 10d\n  key_warn: 10d\n", line: 23, msg: "key_warn 10d must be shorter than key_max_age 10d"},
		{name: "duplicate tenant", edits: map[int]string{2: "  - {id: t1, name: T1}\n  - {id: t1, name: T2}"}, line: 3, msg: `duplicate tenant id "t1" (first at line 2)`},
		{name: "invalid tenant id", edits: map[int]string{2: "  - {id: T1, name: T1}"}, line: 2, msg: `tenant id "T1" is invalid`},
		{name: "invalid person id", edits: map[int]string{4: "  - id: alice adler"}, line: 4, msg: `person id "alice adler" is invalid`},
		{name: "duplicate person", edits: map[int]string{9: `      - {key: "K1", added: 2026-01-01}` + "\n  - {id: alice, name: A2, email: a2@example.org, roles: [admin], keys: [{key: \"K2\", added: 2026-01-01}]}"}, line: 10, msg: `duplicate person id "alice"`},
		{name: "duplicate role", edits: map[int]string{14: "        logins: [root]\n  - {id: admin, allow: [{hosts: {names: ['*']}, logins: [root]}]}"}, line: 15, msg: `duplicate role id "admin"`},
		{name: "duplicate host", add: `  - {name: db1, address: "127.0.0.1:2202", tenant: t1, environment: test, host_key: "HK2"}` + "\n", line: 21, msg: `duplicate host name "db1"`},
		{name: "host name with percent", edits: map[int]string{16: "  - name: root%db1"}, line: 16, msg: "must not contain % or @"},
		{name: "host name with at", edits: map[int]string{16: "  - name: db1@gw"}, line: 16, msg: "must not contain % or @"},
		{name: "person without name", edits: map[int]string{5: "    name: \"\""}, line: 5, msg: "person alice has no name"},
		{name: "person without email", edits: map[int]string{6: "    email: \"\""}, line: 6, msg: "email is missing"},
		{name: "email without at", edits: map[int]string{6: "    email: alice.example.org"}, line: 6, msg: "is not an address"},
		{name: "email with two at", edits: map[int]string{6: "    email: alice@x@example.org"}, line: 6, msg: "is not an address"},
		{name: "shared account", edits: map[int]string{5: "    name: Alice\n    account: shared"}, line: 6, msg: "shared, team, guest and anonymous accounts do not exist; every account belongs to one natural person"},
		{name: "person without key", edits: map[int]string{8: "    keys: []", 9: ""}, line: 8, msg: "person alice has no key"},
		{name: "unparsable key", edits: map[int]string{9: `      - {key: "ssh-ed25519 AAAAnotakey alice@x", added: 2026-01-01}`}, line: 9, msg: "cannot parse key"},
		{name: "dsa key", edits: map[int]string{9: `      - {key: "ssh-dss AAAAB3NzaC1kc3MAAACBAJ2J alice@x", added: 2026-01-01}`}, line: 9, msg: "key is DSA (ssh-dss), which is no longer accepted"},
		{name: "certificate as key", edits: map[int]string{9: `      - {key: "CERT", added: 2026-01-01}`}, line: 9, msg: "a certificate is not accepted"},
		{name: "key with options", edits: map[int]string{9: `      - {key: "OPT", added: 2026-01-01}`}, line: 9, msg: "key options"},
		{name: "key not in strict profile", edits: map[int]string{9: `      - {key: "ED", added: 2026-01-01}`}, add: "gateway: {crypto_profile: strict}\n", line: 9, msg: "not accepted by crypto profile strict"},
		{name: "same key twice for one person", edits: map[int]string{9: `      - {key: "K1", added: 2026-01-01}` + "\n" + `      - {key: "K1", added: 2026-02-01}`}, line: 10, msg: "registered twice (first at line 9)"},
		{name: "same key for two persons", edits: map[int]string{9: `      - {key: "K1", added: 2026-01-01}` + "\n  - {id: bob, name: Bob, email: bob@example.org, roles: [admin], keys: [{key: \"K1\", added: 2026-01-01}]}"}, line: 10, msg: "registered for both persons alice (line 9) and bob"},
		{name: "one email for two persons", edits: map[int]string{9: `      - {key: "K1", added: 2026-01-01}` + "\n  - {id: alice2, name: Alice, email: Alice@Example.ORG, roles: [admin], keys: [{key: \"K2\", added: 2026-01-01}]}"}, line: 10,
			msg: "person alice2: email Alice@Example.ORG is also the email of person alice (line 6)"},
		{name: "key added missing", edits: map[int]string{9: `      - {key: "K1"}`}, line: 9, msg: "key 1 has no added date"},
		{name: "key added bad date", edits: map[int]string{9: `      - {key: "K1", added: 2026-13-01}`}, line: 9, msg: `invalid date "2026-13-01"`},
		{name: "key added german date", edits: map[int]string{9: `      - {key: "K1", added: 01.10.2026}`}, line: 9, msg: "write it as YYYY-MM-DD"},
		{name: "obligation bad date", edits: map[int]string{5: "    name: Alice\n    obligations: {training_valid_until: 2027-06-31}"}, line: 6, msg: "invalid date"},
		{name: "unknown role", edits: map[int]string{7: "    roles: [admin, ghost]"}, line: 7, msg: `unknown role "ghost"`},
		{name: "no roles", edits: map[int]string{7: "    roles: []"}, line: 7, msg: "person alice has no roles"},
		{name: "empty selector", edits: map[int]string{13: "      - hosts: {}"}, line: 13, msg: `selector matches nothing explicitly; use names: ["*"] for all hosts`},
		{name: "missing selector", edits: map[int]string{13: "      - logins: [root]", 14: ""}, line: 13, msg: "selector matches nothing explicitly"},
		{name: "selector unknown tenant", edits: map[int]string{13: "      - hosts: {tenant: t9}"}, line: 13, msg: `unknown tenant "t9"`},
		{name: "selector bad environment", edits: map[int]string{13: "      - hosts: {environment: prod}"}, line: 13, msg: `environment "prod" is not one of production, staging, test`},
		{name: "selector bad glob", edits: map[int]string{13: "      - hosts: {names: [\"db[\"]}"}, line: 13, msg: "not a valid glob"},
		{name: "rule without logins", edits: map[int]string{14: "        logins: []"}, line: 14, msg: "rule grants no logins"},
		{name: "login wildcard", edits: map[int]string{14: "        logins: [root, \"*\"]"}, line: 14, msg: `login "*" is not a valid user name`},
		{name: "login upper case", edits: map[int]string{14: "        logins: [Root]"}, line: 14, msg: `login "Root" is not a valid user name`},
		{name: "login not declared", edits: map[int]string{19: "    environment: production\n    logins: [deploy]"}, line: 14, msg: "login root is not declared by any host this rule matches"},
		{name: "forward bad port", edits: map[int]string{14: "        logins: [root]\n        forward: [\"localhost:99999\"]"}, line: 15, msg: "must be a number from 1 to 65535"},
		{name: "forward without port", edits: map[int]string{14: "        logins: [root]\n        forward: [\"db-*\"]"}, line: 15, msg: "is not host:port"},
		{name: "join mode", edits: map[int]string{14: "        logins: [root]\n        join: [peer, pilot]"}, line: 15, msg: `join mode "pilot" is not peer or observer`},
		{name: "external role with read", edits: map[int]string{11: "  - id: admin\n    external: true", 14: "        logins: [root]\n        read: true"}, line: 16,
			msg: "role admin: an external role may not have read: true (externals never read recordings or the audit log, approve, lock, freeze or configure)"},
		{name: "external role with approve", edits: map[int]string{11: "  - id: admin\n    external: true", 14: "        logins: [root]\n        approve: true"}, line: 16,
			msg: "role admin: an external role may not have approve: true (externals never read recordings or the audit log, approve, lock, freeze or configure)"},
		{name: "external role with lock", edits: map[int]string{11: "  - id: admin\n    external: true\n    permissions: [lock]"}, line: 13,
			msg: "role admin: an external role may not have the permission lock (externals never read recordings or the audit log, approve, lock, freeze or configure)"},
		{name: "external role with audit", edits: map[int]string{11: "  - id: admin\n    external: true", 14: "        logins: [root]\n        audit: true"}, line: 16,
			msg: "role admin: an external role may not have audit: true (externals never read recordings or the audit log, approve, lock, freeze or configure)"},
		{name: "external role with configure", edits: map[int]string{11: "  - id: admin\n    external: true\n    permissions: [configure]"}, line: 13,
			msg: "role admin: an external role may not have the permission configure (externals never read recordings or the audit log, approve, lock, freeze or configure)"},
		{name: "external person with an auditing and configuring role", edits: map[int]string{7: "    roles: [ext, admin]", 12: "    permissions: [configure]\n    allow:",
			14: "        logins: [root]\n        audit: true\n  - {id: ext, external: true, allow: [{hosts: {tenant: t1}, logins: [root]}]}"},
			line: 7, msg: "person alice holds the external role ext together with admin (audit, configure): externals never read recordings or the audit log, approve, lock, freeze or configure"},
		{name: "external person with a reading role", edits: map[int]string{7: "    roles: [admin, ext]",
			14: "        logins: [root]\n        read: true\n  - {id: ext, external: true, allow: [{hosts: {tenant: t1}, logins: [root]}]}"},
			line: 7, msg: "person alice holds the external role ext together with admin (read): externals never read recordings or the audit log, approve, lock, freeze or configure"},
		{name: "external person with an approving and locking role", edits: map[int]string{7: "    roles: [ext, admin]", 12: "    permissions: [lock]\n    allow:",
			14: "        logins: [root]\n        approve: true\n  - {id: ext, external: true, allow: [{hosts: {tenant: t1}, logins: [root]}]}"},
			line: 7, msg: "person alice holds the external role ext together with admin (approve, lock): externals never read recordings or the audit log, approve, lock, freeze or configure"},
		{name: "unknown permission", edits: map[int]string{12: "    permissions: [lock, sudo]\n    allow:"}, line: 12, msg: `unknown permission "sudo"`},
		{name: "negative limit", edits: map[int]string{1: "gateway: {limits: {failures_per_source: -1}}\ntenants:"}, line: 1, msg: "limits.failures_per_source must not be negative"},
		{name: "prefix too long", edits: map[int]string{1: "gateway: {limits: {prefix_v4: 33}}\ntenants:"}, line: 1, msg: "limits.prefix_v4 must be at most 32"},
		{name: "negative eviction silence", edits: map[int]string{1: "gateway: {limits: {evict_after_silence: -1s}}\ntenants:"}, line: 1, msg: "limits.evict_after_silence must not be negative"},
		{name: "eviction silence beyond the handshake", edits: map[int]string{1: "gateway: {handshake_timeout: 20s, limits: {evict_after_silence: 20s}}\ntenants:"}, line: 1, msg: "limits.evict_after_silence (20s) must be shorter than gateway.handshake_timeout (20s)"},
		{name: "negative channel cap", edits: map[int]string{1: "gateway: {limits: {channels_per_connection: -1}}\ntenants:"}, line: 1, msg: "limits.channels_per_connection must not be negative"},
		{name: "witness inside data dir", edits: map[int]string{1: "gateway: {data_dir: /var/lib/tandem}\naudit: {witness_file: /var/lib/tandem/audit/witness}\ntenants:"}, line: 2, msg: "lies inside data_dir"},
		{name: "unknown requires", edits: map[int]string{12: "    requires: [training, blood-oath]\n    allow:"}, line: 12, msg: `unknown obligation "blood-oath"`},
		{name: "host unknown tenant", edits: map[int]string{18: "    tenant: t9"}, line: 18, msg: `host db1: unknown tenant "t9"`},
		{name: "host without tenant", edits: map[int]string{18: "    labels: {a: b}"}, line: 16, msg: "host db1 has no tenant"},
		{name: "host address", edits: map[int]string{17: "    address: db1.example.org"}, line: 17, msg: "is not host:port"},
		{name: "host environment", edits: map[int]string{19: "    environment: prod"}, line: 19, msg: `environment "prod" is not one of`},
		{name: "real data on production", edits: map[int]string{19: "    environment: production\n    real_data: true"}, line: 20, msg: "real_data is only for staging hosts"},
		{name: "real data on test", edits: map[int]string{19: "    environment: test\n    real_data: true"}, line: 20, msg: "real_data is only for staging hosts"},
		{name: "host login invalid", edits: map[int]string{19: "    environment: production\n    logins: [root, \"a b\"]"}, line: 20, msg: `login "a b" is not a valid user name`},
		{name: "no host key", edits: map[int]string{20: "    labels: {a: b}"}, line: 16, msg: "no trust on first use: set host_key or host_ca"},
		{name: "host key and ca", edits: map[int]string{20: `    host_key: "HK"` + "\n" + `    host_ca: "HK2"`}, line: 21, msg: "set either host_key or host_ca, not both"},
		{name: "host key certificate", edits: map[int]string{20: `    host_key: "CERT"`}, line: 20, msg: "a certificate is not accepted"},
		{name: "host ca unparsable", edits: map[int]string{20: `    host_ca: "ecdsa-sha2-nistp256 xyz"`}, line: 20, msg: "host_ca: cannot parse key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := build(k, tt.edits, tt.add)
			if tt.raw != "" {
				data = []byte(tt.raw)
			}
			c, err := Parse("cfg.yaml", data)
			if err == nil {
				t.Fatalf("accepted; want %d: %s\n%s", tt.line, tt.msg, data)
			}
			if c != nil {
				t.Error("a Config was returned with an error")
			}
			var found bool
			for _, p := range problems(t, err) {
				if p.File != "cfg.yaml" {
					t.Errorf("problem file %q", p.File)
				}
				if p.Line == tt.line && strings.Contains(p.Msg, tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("want cfg.yaml:%d: ...%s...; got\n%v\nfile:\n%s", tt.line, tt.msg, err, data)
			}
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	k := newKeys(t)
	data := build(k, map[int]string{
		6:  "    email: nobody",
		7:  "    roles: [admin, ghost]",
		14: "        logins: [\"*\"]",
		20: "    labels: {a: b}",
	}, "gateway:\n  cert_validity: 1h\n")
	_, err := Parse("multi.yaml", data)
	got := problems(t, err)
	want := []struct {
		line int
		msg  string
	}{
		{6, "is not an address"},
		{7, `unknown role "ghost"`},
		{14, "not a valid user name"},
		{16, "no trust on first use"},
		{22, "cert_validity 1h is longer"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(want), err)
	}
	for i, w := range want {
		if got[i].Line != w.line || !strings.Contains(got[i].Msg, w.msg) {
			t.Errorf("problem %d = %v, want line %d with %q", i, got[i], w.line, w.msg)
		}
	}
	// The message is one line per problem, each file:line: reason.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || !strings.HasPrefix(lines[0], "multi.yaml:6: ") {
		t.Errorf("Error() = %q", err.Error())
	}
}

// TestDecodeErrorsDoNotCascade checks that a value that failed to decode is
// reported once, not again as "missing" or "must be longer than 0".
func TestDecodeErrorsDoNotCascade(t *testing.T) {
	k := newKeys(t)
	data := build(k, map[int]string{9: `      - {key: "K1", added: someday}`}, "gateway:\n  cert_validity: soon\n  max_connections: many\n")
	got := problems(t, func() error { _, err := Parse("c.yaml", data); return err }())
	if len(got) != 3 {
		t.Fatalf("want 3 problems, got:\n%v", &ValidationError{got})
	}
}

func TestExample(t *testing.T) {
	c, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gateway
	if g.DataDir != filepath.Join(dir, "tandem-data") {
		t.Errorf("DataDir = %q", g.DataDir)
	}
	if g.Listen != "127.0.0.1:2222" || g.CryptoProfile != "bsi" || g.CertValidity.Duration != 5*time.Minute ||
		g.MaxConnections != 1000 || !slices.Equal(g.Names, []string{"gw.example.org", "localhost"}) {
		t.Errorf("gateway = %+v", g)
	}
	if l := g.Limits; l.UnauthenticatedPerPrefix != 25 || l.PrefixV4 != 24 || l.PrefixV6 != 64 || l.KexTimeout.Duration != 5*time.Second || l.EvictAfterSilence.Duration != time.Second ||
		l.ConnectionsPerPerson != 20 || l.ConnectionsPerSource != 50 || l.ChannelsPerConnection != 10 || l.WaitingPerPerson != 3 ||
		l.PreauthAuditPerMinute != 20 || l.DiskWarnPercent != 10 || l.DiskWarnMiB != 2048 || l.DiskRefusePercent != 2 ||
		l.DiskRefuseMiB != 512 || l.DiskCheckEvery.Duration != 10*time.Second {
		t.Errorf("limits = %+v", l)
	}
	if c.Policy.KeyMaxAge.Duration != 180*Day || c.Policy.KeyWarn.Duration != 14*Day {
		t.Errorf("policy = %+v", c.Policy)
	}
	if len(c.Tenants) != 2 || len(c.Persons) != 3 || len(c.Roles) != 3 || len(c.Hosts) != 3 {
		t.Fatalf("counts: %d tenants, %d persons, %d roles, %d hosts", len(c.Tenants), len(c.Persons), len(c.Roles), len(c.Hosts))
	}
	alice := c.Person("alice")
	if alice == nil || alice.Line != 28 || alice.Account != AccountPersonal {
		t.Fatalf("alice = %+v", alice)
	}
	ak := alice.Keys[0]
	if ak.Comment != "alice@laptop" || ak.PublicKey == nil || ak.PublicKey.Type() != ssh.KeyAlgoED25519 ||
		!strings.HasPrefix(ak.Fingerprint, "SHA256:") || ak.Added.String() != "2026-10-01" || ak.Line != 32 {
		t.Errorf("alice's key = %+v", ak)
	}
	if got := alice.Obligations.TrainingValidUntil.Time; !got.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("training_valid_until = %v", got)
	}
	if p, key := c.PersonByKey(ak.PublicKey); p != alice || key != &alice.Keys[0] {
		t.Errorf("PersonByKey(alice's key) = %v, %v", p, key)
	}
	if p, key := c.PersonByKey(c.Host("db1").HostPublicKey); p != nil || key != nil {
		t.Error("PersonByKey matched a host key")
	}
	if r := c.Role("admin"); r == nil || !slices.Equal(r.Requires, []string{"confidentiality", "training"}) || r.Allow[0].Line != 62 {
		t.Errorf("admin = %+v", r)
	}
	if r := c.Role("db-expert"); r == nil || !slices.Equal(r.Requires, []string{"confidentiality", "training", "contract", "nda"}) {
		t.Errorf("db-expert = %+v", r)
	}
	if roles := c.RolesOf(c.Person("bob")); len(roles) != 2 || roles[0].ID != "admin" || roles[1].ID != "klinik-admin" {
		t.Errorf("RolesOf(bob) = %v", roles)
	}
	db1, stage := c.Host("db1"), c.Host("pg-stage")
	if db1 == nil || db1.HostPublicKey == nil || db1.HostCAKey != nil || db1.Line != 80 {
		t.Errorf("db1 = %+v", db1)
	}
	if stage == nil || stage.HostCAKey == nil || stage.HostPublicKey != nil || !stage.RealData {
		t.Errorf("pg-stage = %+v", stage)
	}
	if c.Tenant("klinik-sued") == nil || c.Tenant("nope") != nil || c.Host("nope") != nil || c.Person("nope") != nil || c.Role("nope") != nil {
		t.Error("lookups")
	}
	raw, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Digest()) != 64 {
		t.Errorf("Digest = %q", c.Digest())
	}
	c2, err := Parse("", raw)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Digest() != c.Digest() || c2.Gateway.DataDir != "./tandem-data" {
		t.Errorf("from memory: digest %s, data_dir %q", c2.Digest(), c2.Gateway.DataDir)
	}
	// The documentation shows this very file.
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(raw)+"```\n") {
		t.Error("docs/CONFIG.md does not contain testdata/example.yaml verbatim")
	}
}

func TestDefaults(t *testing.T) {
	k := newKeys(t)
	c, err := Parse("conf/base.yaml", build(k, map[int]string{
		11: "  - id: admin\n    external: true\n    requires: [training]",
	}, ""))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gateway
	wantDir, _ := filepath.Abs("conf/tandem-data")
	if g.Listen != DefaultListen || g.DataDir != wantDir || g.CryptoProfile != "bsi" || g.KeyType != "ecdsa-p384" ||
		!slices.Equal(g.Names, []string{"127.0.0.1", "localhost"}) ||
		g.CertValidity.Duration != 5*time.Minute || g.HandshakeTimeout.Duration != 20*time.Second ||
		g.DialTimeout.Duration != 10*time.Second || g.KeepAlive.Duration != 3*time.Second ||
		!slices.Equal(g.EnvAllow, []string{"LANG", "LC_*", "TZ"}) || g.MaxConnections != 1000 {
		t.Errorf("gateway defaults = %+v", g)
	}
	if !slices.Equal(c.Policy.FourEyes, []string{"production", "staging:real_data"}) ||
		c.Policy.KeyMaxAge.Duration != 180*24*time.Hour || c.Policy.KeyWarn.Duration != 14*24*time.Hour {
		t.Errorf("policy defaults = %+v", c.Policy)
	}
	if c.Persons[0].Account != "personal" {
		t.Errorf("account = %q", c.Persons[0].Account)
	}
	if r := c.Roles[0]; !slices.Equal(r.Requires, []string{"training", "contract", "nda"}) {
		t.Errorf("external role with explicit requires: %v", r.Requires)
	}

	for _, tt := range []struct {
		listen string
		want   []string
	}{
		{"0.0.0.0:2222", []string{"localhost"}},
		{"[::]:2222", []string{"localhost"}},
		{"localhost:22", []string{"localhost"}},
		{"gw.example.org:22", []string{"gw.example.org", "localhost"}},
		{"[::1]:22", []string{"::1", "localhost"}},
	} {
		c, err := Parse("", build(k, nil, "gateway:\n  listen: \""+tt.listen+"\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Gateway.Names, tt.want) {
			t.Errorf("listen %s: names %v, want %v", tt.listen, c.Gateway.Names, tt.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

func TestSelectorMatches(t *testing.T) {
	h := &Host{Name: "db1", Tenant: "t1", Environment: Production, Labels: map[string]string{"service": "moodle", "tier": "db"}}
	tests := []struct {
		name string
		s    Selector
		want bool
	}{
		{"empty matches nothing", Selector{}, false},
		{"all names", Selector{Names: []string{"*"}}, true},
		{"tenant", Selector{Tenant: "t1"}, true},
		{"other tenant", Selector{Tenant: "t2"}, false},
		{"environment", Selector{Environment: Production}, true},
		{"other environment", Selector{Environment: Staging}, false},
		{"one label", Selector{Labels: map[string]string{"service": "moodle"}}, true},
		{"all labels", Selector{Labels: map[string]string{"service": "moodle", "tier": "db"}}, true},
		{"label differs", Selector{Labels: map[string]string{"service": "moodle", "tier": "web"}}, false},
		{"label missing", Selector{Labels: map[string]string{"zone": "a"}}, false},
		{"label missing, empty value wanted", Selector{Labels: map[string]string{"zone": ""}}, false},
		{"name glob", Selector{Names: []string{"web*", "db?"}}, true},
		{"name glob no match", Selector{Names: []string{"web*"}}, false},
		{"bad glob never matches", Selector{Names: []string{"db["}}, false},
		{"all criteria hold", Selector{Tenant: "t1", Environment: Production, Labels: map[string]string{"tier": "db"}, Names: []string{"db*"}}, true},
		{"one criterion fails", Selector{Tenant: "t1", Environment: Production, Names: []string{"web*"}}, false},
	}
	for _, tt := range tests {
		if got := tt.s.Matches(h); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
	if (Selector{Names: []string{"*"}}).Matches(nil) {
		t.Error("matched a nil host")
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		str  string
		bad  bool
	}{
		{in: "90s", want: 90 * time.Second, str: "1m30s"},
		{in: "5m", want: 5 * time.Minute, str: "5m"},
		{in: "8h", want: 8 * time.Hour, str: "8h"},
		{in: "1h30m", want: 90 * time.Minute, str: "1h30m"},
		{in: "180d", want: 180 * 24 * time.Hour, str: "180d"},
		{in: "1d", want: 24 * time.Hour, str: "1d"},
		{in: "0s", want: 0, str: "0s"},
		{in: "1.5d", bad: true},
		{in: "-3d", bad: true},
		{in: "+3d", bad: true},
		{in: "d", bad: true},
		{in: "5", bad: true},
		{in: "five minutes", bad: true},
		{in: "99999999999d", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %v, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if s := (Duration{got}).String(); s != tt.str {
			t.Errorf("String(%v) = %q, want %q", got, s, tt.str)
		}
		if back, err := ParseDuration(Duration{got}.String()); err != nil || back != got {
			t.Errorf("round trip of %q: %v, %v", tt.in, back, err)
		}
		m, _ := Duration{got}.MarshalYAML()
		if m != tt.str {
			t.Errorf("MarshalYAML = %v", m)
		}
	}
}

func TestDate(t *testing.T) {
	tests := []struct {
		in  string
		bad bool
	}{
		{in: "2026-10-01"},
		{in: "2024-02-29"},
		{in: "2025-02-29", bad: true},
		{in: "2026-13-01", bad: true},
		{in: "2026-1-01", bad: true},
		{in: "01.10.2026", bad: true},
		{in: "2026-10-01T10:00:00Z", bad: true},
		{in: "2026-10-01 10:00", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		d, err := ParseDate(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseDate(%q) = %v, want error", tt.in, d)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseDate(%q): %v", tt.in, err)
			continue
		}
		if d.Location() != time.UTC || d.Hour() != 0 || d.String() != tt.in {
			t.Errorf("ParseDate(%q) = %v", tt.in, d.Time)
		}
		if m, _ := d.MarshalYAML(); m != tt.in {
			t.Errorf("MarshalYAML = %v", m)
		}
	}
	if (Date{}).String() != "" {
		t.Error("zero Date prints")
	}
	if m, _ := (Date{}).MarshalYAML(); m != nil {
		t.Error("zero Date marshals to a value")
	}
}

// TestDateQuotedAndUnquoted: yaml tags an unquoted date as a timestamp;
// both forms must give the same day, and a time of day is refused.
func TestDateQuotedAndUnquoted(t *testing.T) {
	k := newKeys(t)
	for _, v := range []string{"2026-01-01", `"2026-01-01"`, "'2026-01-01'"} {
		c, err := Parse("", build(k, map[int]string{9: `      - {key: "K1", added: ` + v + `}`}, ""))
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if got := c.Persons[0].Keys[0].Added.Time; !got.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: %v", v, got)
		}
	}
	_, err := Parse("", build(k, map[int]string{9: `      - {key: "K1", added: 2026-01-01T12:00:00Z}`}, ""))
	if err == nil {
		t.Error("a timestamp was accepted as a date")
	}
}

// TestExternalRolesAccepted: the limits on external roles refuse only the
// rights that act on others' work; joining, logins and forwards stay.
func TestExternalRolesAccepted(t *testing.T) {
	k := newKeys(t)
	for name, edits := range map[string]map[int]string{
		"external role with join and forward": {11: "  - id: admin\n    external: true",
			14: "        logins: [root]\n        join: [peer]\n        forward: [\"localhost:5432\"]"},
		"external person with a plain employee role": {7: "    roles: [admin, ext]",
			14: "        logins: [root]\n  - {id: ext, external: true, allow: [{hosts: {tenant: t1}, logins: [root]}]}"},
		"employee with read, approve and lock": {12: "    permissions: [lock]\n    allow:",
			14: "        logins: [root]\n        read: true\n        approve: true"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse("cfg.yaml", build(k, edits, "")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDefaultFourEyes(t *testing.T) {
	a := DefaultFourEyes()
	if got, want := strings.Join(a, ","), "production,staging:real_data"; got != want {
		t.Fatalf("DefaultFourEyes = %q, want %q", got, want)
	}
	a[0] = "test"
	if DefaultFourEyes()[0] != Production {
		t.Error("changing a returned list changed the default")
	}
}
