package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

// syslogOutage is how long the collector stays away while sessions run;
// TANDEM_SYSLOG_OUTAGE (a Go duration) shortens it for a quick run.
func syslogOutage(t *testing.T) time.Duration {
	if v := os.Getenv("TANDEM_SYSLOG_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("TANDEM_SYSLOG_OUTAGE: %v", err)
		}
		return d
	}
	return 30 * time.Second
}

var sdIndexRE = regexp.MustCompile(`\[audit@32473 index="(\d+)" segment="1" tenant="([^"]*)" type="([^"]+)" class="([a-z]+)"`)

// received reads rsyslog's file: the record indexes in arrival order and
// the type of each.
func received(t *testing.T, path string) (order []uint64, types map[uint64]string, text string) {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	types = map[uint64]string{}
	for _, m := range sdIndexRE.FindAllStringSubmatch(string(b), -1) {
		i, _ := strconv.ParseUint(m[1], 10, 64)
		order = append(order, i)
		types[i] = m[3]
	}
	return order, types, string(b)
}

// TestSyslogToRsyslog sends the audit log to a real rsyslog over mutual
// TLS: events arrive with their structured data and nothing in clear
// that the local log encrypts; rsyslog is stopped while sessions run and
// started again, and then every record is there once (duplicates removed
// by index), in order; `audit verify --witness-syslog` checks the log
// against the checkpoints in rsyslog's file.
func TestSyslogToRsyslog(t *testing.T) {
	e := newEnv(t)
	pki := testenv.NewPKI(t, filepath.Join(e.Dir, "pki"), "central log CA")
	rs := testenv.StartRsyslog(t, mkdir(t, e.Dir, "rsyslog"), pki, pki.ClientName)

	e.GW.Stop(t)
	e.Cfg.Syslog = config.Syslog{
		Collectors: []config.Collector{{Name: "central", Addr: rs.Addr, ServerName: "localhost",
			CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}},
		Hostname: "gw-test",
		Settle:   config.Duration{Duration: 500 * time.Millisecond},
		Retry:    config.Duration{Duration: 200 * time.Millisecond},
	}
	e.Cfg.Audit.CheckpointEvery = config.Duration{Duration: time.Second}
	writeConfig(t, e.Config, e.Cfg)
	e.GW = testenv.StartGateway(t, e.Bin, e.Config, e.GW.Port)

	marker := nonce(t)
	if r := e.Alice.SSH(t, "db1", "echo "+marker); r.Code != 0 {
		e.failf(t, r, "session before the outage")
	}
	if !testenv.WaitFor(20*time.Second, func() bool {
		_, types, _ := received(t, rs.Out)
		for _, ty := range types {
			if ty == "session.end" {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no session.end at rsyslog:\n%s\n%s", rs.Stderr.Tail(2000), e.GW.Tail())
	}
	_, _, text := received(t, rs.Out)
	for _, want := range []string{` gw-test tandem - session.start [audit@32473 index="`, `tenant="schule-nord" type="session.start" class="admin" v="2"][admin@32473 day="`, `[checkpoint@32473 origin="tandem/audit" segment="1" size="`} {
		if !strings.Contains(text, want) {
			t.Errorf("rsyslog's file lacks %q", want)
		}
	}
	for _, leak := range []string{marker, "alice", "127.0.0.1:"} {
		if strings.Contains(text, leak) {
			t.Errorf("rsyslog received %q in clear", leak)
		}
	}

	rs.Stop(t)
	outage := syslogOutage(t)
	end := time.Now().Add(outage)
	sessions := 0
	for time.Now().Before(end) || sessions < 3 {
		if r := e.Alice.SSH(t, "db1", "echo during-outage"); r.Code != 0 {
			e.failf(t, r, "session %d while the collector is away", sessions)
		}
		sessions++
		time.Sleep(min(time.Second, outage/5))
	}
	out, _, err := e.GW.Run(t, "status", "--config", e.Config)
	if err != nil || !regexp.MustCompile(`central\s+\S+\s+1\s+\d+\s+[1-9]\d*\s+\d+`).MatchString(out) {
		t.Errorf("tandem status while the collector is away: %v\n%s", err, out)
	}
	t.Logf("%d sessions during a %s outage; status:\n%s", sessions, outage, out)
	rs.Start(t)

	if _, _, err := e.GW.Run(t, "audit", "verify", "--config", e.Config); err != nil {
		t.Fatal(err)
	}
	var order []uint64
	ok := testenv.WaitFor(60*time.Second, func() bool {
		out, _, err := e.GW.Run(t, "status", "--config", e.Config, "--json")
		order, _, _ = received(t, rs.Out)
		return err == nil && strings.Contains(out, `"missing": 0`)
	})
	if !ok {
		t.Fatalf("the collector did not catch up:\n%s\n%s", rs.Stderr.Tail(2000), e.GW.Tail())
	}
	seen := map[uint64]bool{}
	var next uint64
	dups := 0
	for _, i := range order {
		if seen[i] {
			dups++
			continue
		}
		if i != next {
			t.Fatalf("record %d arrived where %d was due", i, next)
		}
		seen[i] = true
		next++
	}
	t.Logf("%d records at rsyslog, %d duplicates removed", next, dups)

	wout, werr, err := e.GW.Run(t, "audit", "verify", "--config", e.Config, "--witness-syslog", rs.Out)
	if err != nil || !strings.Contains(wout, "witnessed checkpoints") {
		t.Fatalf("audit verify --witness-syslog: %v\n%s\n%s", err, wout, werr)
	}
	t.Logf("audit verify --witness-syslog:\n%s", wout)
}
