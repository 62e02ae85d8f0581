package main

// Two other SSH relays as optional comparison columns (issue 22): sshpiper
// (sshpiperd, a packet relay) and ContainerSSH (a channel relay, with its
// sshproxy backend). Neither is built here; the benchmark runs them only
// when their binaries are given (-sshpiper, -containerssh), on 127.0.0.1,
// with a configuration generated from their documentation, in front of
// the same private target sshd as Tandem.
//
// Documentation followed: sshpiper's master branch (cmd/sshpiperd/main.go
// flags, plugin/yaml README), ContainerSSH 0.5 (containerssh.io
// reference: ssh, sshproxy, auth-webhook, audit). See bench/README.md.

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/testenv"
)

// Peer kinds.
const (
	peerSSHPiper     = "sshpiper"
	peerContainerSSH = "ContainerSSH"
)

// peerSpec is one comparison column: a peer, with its recording off or on.
type peerSpec struct {
	kind   string
	bin    string
	record bool
}

// label is the column's heading.
func (p peerSpec) label() string {
	if p.record {
		return p.kind + ", recording on"
	}
	return p.kind
}

// alias is the column's host in the benchmark's ssh_config.
func (p peerSpec) alias() string {
	a := "peer-" + strings.ToLower(p.kind)
	if p.record {
		a += "-rec"
	}
	return a
}

// peerSpecs lists the columns for the binaries given: each peer with its
// recording off and, since both can record, on.
func peerSpecs(sshpiper, containerssh string) []peerSpec {
	var out []peerSpec
	for _, p := range []struct{ kind, bin string }{{peerSSHPiper, sshpiper}, {peerContainerSSH, containerssh}} {
		if p.bin != "" {
			out = append(out, peerSpec{kind: p.kind, bin: p.bin}, peerSpec{kind: p.kind, bin: p.bin, record: true})
		}
	}
	return out
}

// peerFiles are the keys and directories a peer's configuration names.
type peerFiles struct {
	Port           int    // where the peer listens, on 127.0.0.1
	HostKey        string // the peer's own host key (private, ECDSA P-256)
	TargetPort     int    // the target sshd, on 127.0.0.1
	TargetHostKey  string // the target's host public key, authorized_keys form
	AuthorizedKeys string // file with the person's public key (downstream)
	UpstreamKey    string // private key the peer logs in to the target with
	KnownHosts     string // known_hosts for the target (sshpiper)
	RecordDir      string // where recordings go; "" for recording off
	WebhookURL     string // ContainerSSH's authentication webhook
	Dir            string // where the generated files go
}

// sshpiperYAML is the configuration of sshpiper's yaml plugin: every login
// as root whose key is in AuthorizedKeys goes to the target as root with
// UpstreamKey, the target's host key checked against KnownHosts. The
// "fixed" plugin would route the same way but only with the person's
// password passed through (its README: "only password auth is
// supported"), and the target takes keys only.
func sshpiperYAML(f peerFiles) ([]byte, error) {
	type from struct {
		Username       string `yaml:"username"`
		AuthorizedKeys string `yaml:"authorized_keys"`
	}
	type to struct {
		Host       string `yaml:"host"`
		Username   string `yaml:"username"`
		PrivateKey string `yaml:"private_key"`
		KnownHosts string `yaml:"known_hosts"`
	}
	type pipe struct {
		From []from `yaml:"from"`
		To   to     `yaml:"to"`
	}
	return yaml.Marshal(struct {
		Version string `yaml:"version"`
		Pipes   []pipe `yaml:"pipes"`
	}{"1.0", []pipe{{
		From: []from{{Username: "root", AuthorizedKeys: f.AuthorizedKeys}},
		To:   to{Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(f.TargetPort)), Username: "root", PrivateKey: f.UpstreamKey, KnownHosts: f.KnownHosts},
	}}})
}

// sshpiperArgs is sshpiperd's command line: listen on loopback, the
// client leg pinned to the benchmark's algorithms, recording (asciicast
// screen recording) when RecordDir is set, then the yaml plugin. The
// upstream leg has no algorithm setting in sshpiper; the target sshd
// offers only the pinned ones, so it negotiates them all the same.
func sshpiperArgs(f peerFiles, plugin, config string) []string {
	args := []string{"--address", "127.0.0.1", "--port", strconv.Itoa(f.Port), "--server-key", f.HostKey,
		"--log-level", "warn",
		"--allowed-downstream-ciphers-algos", benchCipher, "--allowed-downstream-keyexchange-algos", benchKex}
	if f.RecordDir != "" {
		args = append(args, "--screen-recording-dir", f.RecordDir, "--screen-recording-format", "asciicast")
	}
	return append(args, plugin, "--config", config)
}

// sshpiperPlugin finds the yaml plugin that sshpiper's releases ship
// beside sshpiperd (in plugins/ or the same directory).
func sshpiperPlugin(bin string) (string, error) {
	dir := filepath.Dir(bin)
	for _, p := range []string{filepath.Join(dir, "plugins", "yaml"), filepath.Join(dir, "yaml")} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("sshpiper's yaml plugin not found in %s/plugins or %s (it ships with sshpiperd)", dir, dir)
}

// containerSSHConfig is ContainerSSH's configuration: the SSH service on
// loopback with the pinned algorithms, public keys checked by the
// benchmark's webhook, and the sshproxy backend to the target (the same
// algorithms pinned upstream, the target's host key by fingerprint).
// Recording is its audit log in the "audit" format to files; off, it is
// format none.
func containerSSHConfig(f peerFiles) ([]byte, error) {
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(f.TargetHostKey))
	if err != nil {
		return nil, fmt.Errorf("target host key: %w", err)
	}
	audit := map[string]any{"format": "none", "storage": "none"}
	if f.RecordDir != "" {
		audit = map[string]any{"format": "audit", "storage": "file", "file": map[string]any{"directory": f.RecordDir},
			"intercept": map[string]any{"stdin": true, "stdout": true, "stderr": true, "passwords": false}}
	}
	algos := func(m map[string]any) map[string]any {
		m["ciphers"], m["kex"] = []string{benchCipher}, []string{benchKex}
		return m
	}
	return yaml.Marshal(map[string]any{
		"ssh": algos(map[string]any{"listen": net.JoinHostPort("127.0.0.1", strconv.Itoa(f.Port)), "hostkeys": []string{f.HostKey}}),
		"auth": map[string]any{"publicKey": map[string]any{"method": "webhook",
			"webhook": map[string]any{"url": f.WebhookURL, "authTimeout": "10s"}}},
		"backend": "sshproxy",
		"sshproxy": algos(map[string]any{"server": "127.0.0.1", "port": f.TargetPort, "username": "root",
			"privateKey": f.UpstreamKey, "allowedHostKeyFingerprints": []string{ssh.FingerprintSHA256(hostKey)}}),
		"audit": audit,
		"log":   map[string]any{"level": "warning"},
	})
}

// authRequest is the part of ContainerSSH's /pubkey request the webhook
// reads.
type authRequest struct {
	Username  string `json:"username"`
	PublicKey string `json:"publicKey"`
}

// authResponse is ContainerSSH's webhook answer.
type authResponse struct {
	Success               bool   `json:"success"`
	AuthenticatedUsername string `json:"authenticatedUsername,omitempty"`
}

// authWebhook answers ContainerSSH's authentication requests: /pubkey
// succeeds for user with exactly the key allowed, and nothing else does
// (passwords never). Bodies are bounded; the answer is always 200 with
// success true or false, as the API wants.
func authWebhook(user string, allowed ssh.PublicKey) http.Handler {
	want := allowed.Marshal()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pubkey", func(w http.ResponseWriter, r *http.Request) {
		var req authRequest
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil || json.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		ok := false
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey)); err == nil {
			ok = subtle.ConstantTimeCompare(k.Marshal(), want) == 1 && req.Username == user
		}
		resp := authResponse{Success: ok}
		if ok {
			resp.AuthenticatedUsername = req.Username
		}
		writeJSON(w, resp)
	})
	mux.HandleFunc("POST /password", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
		writeJSON(w, authResponse{})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// webhookServer serves authWebhook on 127.0.0.1 until close.
type webhookServer struct {
	srv  *http.Server
	url  string
	done chan struct{}
}

func startWebhook(user string, allowed ssh.PublicKey) (*webhookServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	s := &webhookServer{srv: &http.Server{Handler: authWebhook(user, allowed), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute},
		url: "http://" + ln.Addr().String(), done: make(chan struct{})}
	go func() { // owned by s; ends in close
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *webhookServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}

// peerRun is one started peer.
type peerRun struct {
	spec    peerSpec
	files   peerFiles
	p       *proc
	log     string
	pubLine string // its host key, for known_hosts
	webhook *webhookServer
}

// preparePeer writes a peer's keys and configuration and returns the
// command that starts it.
func preparePeer(e *env, spec peerSpec, targetPort int, ownerPubFile string) (*peerRun, *exec.Cmd, error) {
	sub := filepath.Join(e.dir, spec.alias())
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return nil, nil, err
	}
	port, err := testenv.PickPort()
	if err != nil {
		return nil, nil, err
	}
	priv, pub, err := testenv.NewKeyPair(sub, "host_key", "ecdsa")
	if err != nil {
		return nil, nil, err
	}
	f := peerFiles{Port: port, HostKey: priv, TargetPort: targetPort, TargetHostKey: e.targetPub,
		AuthorizedKeys: ownerPubFile, UpstreamKey: e.key, Dir: sub}
	if spec.record {
		f.RecordDir = filepath.Join(sub, "recordings")
		if err := os.MkdirAll(f.RecordDir, 0o700); err != nil {
			return nil, nil, err
		}
	}
	r := &peerRun{spec: spec, files: f, log: filepath.Join(sub, "peer.log"), pubLine: pub}
	var cmd *exec.Cmd
	switch spec.kind {
	case peerSSHPiper:
		plugin, err := sshpiperPlugin(spec.bin)
		if err != nil {
			return nil, nil, err
		}
		r.files.KnownHosts = filepath.Join(sub, "known_hosts")
		line := fmt.Sprintf("[127.0.0.1]:%d %s\n", targetPort, strings.TrimSpace(e.targetPub))
		if err := os.WriteFile(r.files.KnownHosts, []byte(line), 0o400); err != nil {
			return nil, nil, err
		}
		y, err := sshpiperYAML(r.files)
		if err != nil {
			return nil, nil, err
		}
		cfg := filepath.Join(sub, "sshpiperd.yaml")
		// The yaml plugin refuses a configuration others may read (0400).
		if err := os.WriteFile(cfg, y, 0o400); err != nil {
			return nil, nil, err
		}
		cmd = exec.Command(spec.bin, sshpiperArgs(r.files, plugin, cfg)...)
	case peerContainerSSH:
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(e.ownerPub))
		if err != nil {
			return nil, nil, fmt.Errorf("owner key: %w", err)
		}
		if r.webhook, err = startWebhook("root", k); err != nil {
			return nil, nil, err
		}
		r.files.WebhookURL = r.webhook.url
		y, err := containerSSHConfig(r.files)
		if err != nil {
			r.webhook.close()
			return nil, nil, err
		}
		cfg := filepath.Join(sub, "config.yaml")
		if err := os.WriteFile(cfg, y, 0o600); err != nil {
			r.webhook.close()
			return nil, nil, err
		}
		cmd = exec.Command(spec.bin, "--config", cfg)
	default:
		return nil, nil, fmt.Errorf("unknown peer %q", spec.kind)
	}
	return r, cmd, nil
}

// startPeers starts every peer given and waits until each listens; a
// peer that does not start is an error that quotes the end of its log.
func startPeers(ctx context.Context, e *env, specs []peerSpec, targetPort int) ([]*peerRun, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	ownerPubFile := filepath.Join(e.dir, "peer_authorized_keys")
	if err := os.WriteFile(ownerPubFile, []byte(strings.TrimSpace(e.ownerPub)+"\n"), 0o400); err != nil {
		return nil, err
	}
	var out []*peerRun
	for _, spec := range specs {
		r, cmd, err := preparePeer(e, spec, targetPort, ownerPubFile)
		if err != nil {
			return out, fmt.Errorf("%s: %w", spec.label(), err)
		}
		out = append(out, r)
		logFile, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return out, err
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
		r.p, err = e.reg.start(spec.label(), cmd)
		logFile.Close()
		if err != nil {
			return out, fmt.Errorf("%s: %w", spec.label(), err)
		}
		if err := waitListening(ctx, r.files.Port, r.p, 15*time.Second); err != nil {
			return out, fmt.Errorf("%s did not start: %w; the end of its log (%s, kept with -keep):\n%s", spec.label(), err, r.log, logTail(r.log, 20))
		}
	}
	return out, nil
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "(empty)"
	}
	return string(bytes.TrimSpace([]byte(strings.Join(lines, "\n"))))
}

// closePeers stops the webhooks; the processes stop with the others.
func closePeers(rs []*peerRun) {
	for _, r := range rs {
		if r.webhook != nil {
			r.webhook.close()
		}
	}
}
