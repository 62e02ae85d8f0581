package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

// TestPeerConfigs checks the generated peer configurations for a few
// ports and keys: they parse, listen on loopback, route to the target,
// and pin the benchmark's algorithms wherever the peer has a setting.
func TestPeerConfigs(t *testing.T) {
	targetPub := testPub(t)
	tk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(targetPub))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		port, target int
		record       string
	}{{2300, 2301, ""}, {40001, 22, "/tmp/rec"}, {65535, 1024, "/var/tmp/peer rec"}} {
		t.Run(fmt.Sprintf("%d-%d-%q", c.port, c.target, c.record), func(t *testing.T) {
			f := peerFiles{Port: c.port, HostKey: "/k/host", TargetPort: c.target, TargetHostKey: targetPub,
				AuthorizedKeys: "/k/authorized_keys", UpstreamKey: "/k/id_ecdsa", KnownHosts: "/k/known_hosts",
				RecordDir: c.record, WebhookURL: "http://127.0.0.1:9/"}
			target := fmt.Sprintf("127.0.0.1:%d", c.target)

			// sshpiper: the yaml plugin's file and sshpiperd's flags.
			y, err := sshpiperYAML(f)
			if err != nil {
				t.Fatal(err)
			}
			var piper struct {
				Version string
				Pipes   []struct {
					From []map[string]string
					To   map[string]string
				}
			}
			if err := yaml.Unmarshal(y, &piper); err != nil {
				t.Fatalf("%v\n%s", err, y)
			}
			if piper.Version != "1.0" || len(piper.Pipes) != 1 || len(piper.Pipes[0].From) != 1 {
				t.Fatalf("unexpected shape:\n%s", y)
			}
			p := piper.Pipes[0]
			if p.From[0]["username"] != "root" || p.From[0]["authorized_keys"] != f.AuthorizedKeys ||
				p.To["host"] != target || p.To["private_key"] != f.UpstreamKey || p.To["known_hosts"] != f.KnownHosts || p.To["ignore_hostkey"] != "" {
				t.Fatalf("pipe %+v", p)
			}
			args := sshpiperArgs(f, "/p/yaml", "/c.yaml")
			line := strings.Join(args, " ")
			for _, want := range []string{"--address 127.0.0.1 ", fmt.Sprintf("--port %d ", c.port),
				"--allowed-downstream-ciphers-algos " + benchCipher, "--allowed-downstream-keyexchange-algos " + benchKex} {
				if !strings.Contains(line, want) {
					t.Errorf("sshpiperd args lack %q: %s", want, line)
				}
			}
			if !slices.Equal(args[len(args)-3:], []string{"/p/yaml", "--config", "/c.yaml"}) {
				t.Errorf("the plugin must come last: %s", line)
			}
			if got := slices.Contains(args, "--screen-recording-dir"); got != (c.record != "") {
				t.Errorf("recording flag present %v, recording %q", got, c.record)
			}

			// ContainerSSH.
			y, err = containerSSHConfig(f)
			if err != nil {
				t.Fatal(err)
			}
			var cs struct {
				SSH struct {
					Listen   string
					Hostkeys []string
					Ciphers  []string
					Kex      []string
				}
				Auth struct {
					PublicKey struct {
						Method  string
						Webhook struct{ URL string }
					} `yaml:"publicKey"`
				}
				Backend  string
				SSHProxy struct {
					Server                     string
					Port                       int
					Username                   string
					PrivateKey                 string   `yaml:"privateKey"`
					AllowedHostKeyFingerprints []string `yaml:"allowedHostKeyFingerprints"`
					Ciphers                    []string
					Kex                        []string
				} `yaml:"sshproxy"`
				Audit struct {
					Format, Storage string
					File            struct{ Directory string }
				}
			}
			if err := yaml.Unmarshal(y, &cs); err != nil {
				t.Fatalf("%v\n%s", err, y)
			}
			pinned := []string{benchCipher}
			switch {
			case cs.SSH.Listen != fmt.Sprintf("127.0.0.1:%d", c.port) || !slices.Equal(cs.SSH.Hostkeys, []string{f.HostKey}):
				t.Errorf("ssh section %+v", cs.SSH)
			case !slices.Equal(cs.SSH.Ciphers, pinned) || !slices.Equal(cs.SSH.Kex, []string{benchKex}):
				t.Errorf("client leg not pinned: %+v", cs.SSH)
			case !slices.Equal(cs.SSHProxy.Ciphers, pinned) || !slices.Equal(cs.SSHProxy.Kex, []string{benchKex}):
				t.Errorf("upstream leg not pinned: %+v", cs.SSHProxy)
			case cs.Backend != "sshproxy" || cs.SSHProxy.Server != "127.0.0.1" || cs.SSHProxy.Port != c.target || cs.SSHProxy.Username != "root" || cs.SSHProxy.PrivateKey != f.UpstreamKey:
				t.Errorf("backend %q %+v", cs.Backend, cs.SSHProxy)
			case !slices.Equal(cs.SSHProxy.AllowedHostKeyFingerprints, []string{ssh.FingerprintSHA256(tk)}):
				t.Errorf("target host key fingerprints %v", cs.SSHProxy.AllowedHostKeyFingerprints)
			case cs.Auth.PublicKey.Method != "webhook" || cs.Auth.PublicKey.Webhook.URL != f.WebhookURL:
				t.Errorf("auth %+v", cs.Auth)
			}
			if c.record == "" && cs.Audit.Format != "none" || c.record != "" && (cs.Audit.Format != "audit" || cs.Audit.Storage != "file" || cs.Audit.File.Directory != c.record) {
				t.Errorf("audit %+v for recording %q", cs.Audit, c.record)
			}
		})
	}
	bad := peerFiles{TargetHostKey: "not a key"}
	if _, err := containerSSHConfig(bad); err == nil {
		t.Error("a target host key that does not parse must be an error")
	}
}

// TestAuthWebhook runs ContainerSSH's authentication webhook on loopback:
// the bench key as root succeeds, another key, another user, a password
// and a malformed body do not.
func TestAuthWebhook(t *testing.T) {
	benchKey, other := testPub(t), testPub(t)
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(benchKey))
	if err != nil {
		t.Fatal(err)
	}
	s, err := startWebhook("root", k)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if !strings.HasPrefix(s.url, "http://127.0.0.1:") {
		t.Fatalf("webhook not on loopback: %s", s.url)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(path string, body any) (int, authResponse) {
		t.Helper()
		b, ok := body.([]byte)
		if !ok {
			b, _ = json.Marshal(body)
		}
		resp, err := client.Post(s.url+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r authResponse
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, r
	}
	req := func(user, key string) map[string]string {
		return map[string]string{"username": user, "remoteAddress": "127.0.0.1:1234", "connectionId": "c1", "publicKey": key}
	}
	for _, c := range []struct {
		name   string
		path   string
		body   any
		status int
		ok     bool
	}{
		{"bench key", "/pubkey", req("root", benchKey), 200, true},
		{"bench key without comment", "/pubkey", req("root", strings.Join(strings.Fields(benchKey)[:2], " ")), 200, true},
		{"another key", "/pubkey", req("root", other), 200, false},
		{"another user", "/pubkey", req("admin", benchKey), 200, false},
		{"not a key", "/pubkey", req("root", "ssh-ed25519 AAAA"), 200, false},
		{"password", "/password", map[string]string{"username": "root", "passwordBase64": "cm9vdA=="}, 200, false},
		{"malformed body", "/pubkey", []byte("{"), 400, false},
		{"unknown endpoint", "/authz", req("root", benchKey), 404, false},
	} {
		status, r := post(c.path, c.body)
		if status != c.status || r.Success != c.ok {
			t.Errorf("%s: status %d, success %v; want %d, %v", c.name, status, r.Success, c.status, c.ok)
		}
		if r.Success && r.AuthenticatedUsername != "root" {
			t.Errorf("%s: authenticated as %q", c.name, r.AuthenticatedUsername)
		}
	}
}

// TestPeerColumns checks that only the peers given get columns, each
// with recording off and on, and that the table prints no others.
func TestPeerColumns(t *testing.T) {
	if got := peerSpecs("", ""); len(got) != 0 {
		t.Fatalf("no binaries, yet columns %v", got)
	}
	for _, c := range []struct {
		sshpiper, containerssh string
		want, absent           []string
	}{
		{"/bin/sshpiperd", "", []string{"sshpiper", "sshpiper, recording on"}, []string{"ContainerSSH"}},
		{"", "/bin/containerssh", []string{"ContainerSSH", "ContainerSSH, recording on"}, []string{"sshpiper"}},
		{"/bin/sshpiperd", "/bin/containerssh", []string{"sshpiper", "sshpiper, recording on", "ContainerSSH", "ContainerSSH, recording on"}, nil},
	} {
		e := &env{}
		for _, s := range peerSpecs(c.sshpiper, c.containerssh) {
			e.peers = append(e.peers, &peerRun{spec: s})
		}
		var cols []string
		for _, p := range cmpPaths(e) {
			cols = append(cols, p.label)
		}
		if want := append([]string{colDirect, colTandem}, c.want...); !slices.Equal(cols, want) {
			t.Errorf("columns %q, want %q", cols, want)
		}
		table := (&peerCompare{columns: cols, rows: []cmpRow{{measure: "(c) set-up", cells: map[string]string{colDirect: "1.0 ms"}}}}).markdown()
		header := strings.SplitN(strings.SplitN(table, "| measure |", 2)[1], "\n", 2)[0]
		for _, a := range c.absent {
			if strings.Contains(header, a) {
				t.Errorf("column of %s, which was not given:\n%s", a, table)
			}
		}
		if want := len(cols) + 2; strings.Count(strings.Split(table, "\n")[4], "|") != want {
			t.Errorf("row does not have %d cells:\n%s", len(cols), table)
		}
	}
	if (*peerCompare)(nil).markdown() != "" {
		t.Error("no peers, yet a table")
	}
}
