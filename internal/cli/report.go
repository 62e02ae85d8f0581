package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/report"
	"tandem.dev/tandem/internal/store"
)

// newReportCmd is "tandem report": the evidence report of a tenant for
// its auditors, and "tandem report verify", the auditor's check of one.
func newReportCmd() *cobra.Command {
	var o reportFlags
	cmd := &cobra.Command{
		Use:   "report",
		Short: "write a tenant's evidence report (HTML, optional PDF) that its auditors check offline, or a person's access report",
		Long: `With --tenant, writes one self-contained HTML file for a tenant and a
period: the figures of the technical and organisational measures
(sessions, four-eyes sessions and their second persons, refusals,
sessions ended by locks, revocations and reloads, reads and exports of
recordings, retention actions, break-glass uses, spot checks), each
citing its audit records. The file embeds those records, a key per record
that opens only its admin fields, an inclusion proof per record and the
signed checkpoint, so "tandem report verify" checks every figure without
the gateway. Only records of the tenant are included. --pdf prints it
with headless Chromium as well.

With --person, lists what Tandem stores about a person (GDPR Art. 15):
their configuration entry and keys, and every audit record naming them
(sessions owned and joined, requests and approvals, locks, reads of their
recordings by others, retention), other persons shown as "(another
person)" except the readers of their recordings.

Either report is recorded in the audit log (report.created) before it is
written.`,
		Example: `  tandem report -c /etc/tandem/tandem.yaml --tenant schule-nord --from 2026-10-01 --to 2026-10-31 --out nord-2026-10.html
  tandem report -c /etc/tandem/tandem.yaml --tenant schule-nord --from 2026-10-01 --to 2026-10-31 --out nord.html --pdf nord.pdf
  tandem report verify nord-2026-10.html --pubkey tandem-audit.pub --witness witness.log   # the auditor, offline
  tandem report -c /etc/tandem/tandem.yaml --person alice --out alice-art15.txt             # what Tandem stores about alice
  tandem report -c /etc/tandem/tandem.yaml --person alice --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case (o.tenant == "") == (o.person == ""):
				return &usageError{cmd: cmd, err: fmt.Errorf("give --tenant (an evidence report) or --person (an access report)")}
			case o.person != "":
				return runPersonReport(cmd, o)
			case o.out == "" && o.pdf == "":
				return &usageError{cmd: cmd, err: fmt.Errorf("--out FILE or --pdf FILE is required")}
			}
			return runTenantReport(cmd, o)
		},
	}
	configFlag(cmd, &o.cfgPath)
	cmd.Flags().StringVar(&o.tenant, "tenant", "", "the tenant (id) to write the evidence report of")
	cmd.Flags().StringVar(&o.person, "person", "", "the person (id) to write the access report of (GDPR Art. 15)")
	cmd.Flags().StringVar(&o.from, "from", "", "first day, YYYY-MM-DD (UTC; default 30 days before --to)")
	cmd.Flags().StringVar(&o.to, "to", "", "last day, YYYY-MM-DD, included (UTC; default today)")
	cmd.Flags().StringVar(&o.out, "out", "", "the file to write (HTML for --tenant; text or JSON for --person, default stdout)")
	cmd.Flags().StringVar(&o.pdf, "pdf", "", "also print the evidence report to this PDF file (headless chromium)")
	cmd.Flags().BoolVar(&o.json, "json", false, "the access report as JSON")
	cmd.AddCommand(newReportVerifyCmd())
	return cmd
}

type reportFlags struct {
	cfgPath, tenant, person, from, to, out, pdf string
	json                                        bool
}

// openReportSources loads the configuration, the vault and a local
// gateway whose Audit queues events for the running gateway.
func openReportSources(cmd *cobra.Command, path string) (*config.Config, *record.Vault, *localGateway, func(), error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	v, err := openVault(cfg, false)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	st, err := store.Open(storePath(cfg))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return cfg, v, newLocalGateway(cmd.Context(), cfg, st, v), func() { st.Close() }, nil
}

func runTenantReport(cmd *cobra.Command, o reportFlags) error {
	now := clock.Now().UTC()
	fromDay, toDay, err := reportPeriod(o.from, o.to, now)
	if err != nil {
		return &usageError{cmd: cmd, err: err}
	}
	cfg, v, gw, done, err := openReportSources(cmd, o.cfgPath)
	if err != nil {
		return err
	}
	defer done()
	if cfg.Tenant(o.tenant) == nil {
		return fmt.Errorf("unknown tenant %q", o.tenant)
	}
	ev, err := report.Build(report.Options{AuditDir: auditDir(cfg), Keys: v, Tenant: o.tenant, From: fromDay, To: toDay, Now: now,
		Stated: statedAccess(cfg, o.tenant, now)})
	if err != nil {
		return err
	}
	page, err := report.Render(ev)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(page)
	// Recorded before any byte is written: the report discloses the
	// tenant's records (fail closed, as for exports of recordings).
	if err := gw.Audit(cmd.Context(), audit.ReportCreatedEvent{Tenant: o.tenant, Kind: "tenant", Period: ev.From + ".." + ev.To,
		Records: len(ev.Records), SHA256: hex.EncodeToString(sum[:])}.Event()); err != nil {
		return err
	}
	htmlPath := o.out
	if htmlPath == "" {
		dir, err := os.MkdirTemp("", "tandem-report-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		htmlPath = filepath.Join(dir, "report.html")
	}
	if err := writePrivate(htmlPath, page); err != nil {
		return err
	}
	if o.pdf != "" {
		if err := report.PDF(cmd.Context(), htmlPath, o.pdf); err != nil {
			return err
		}
	}
	printReportSummary(cmd.OutOrStdout(), ev, o.out, o.pdf)
	return nil
}

// statedAccess lists the keys of every person whom the configuration in
// force lets log in to a host of tenant, with their age: key ages are
// configuration, not log, so the report shows them as stated.
func statedAccess(cfg *config.Config, tenant string, now time.Time) *report.Stated {
	eng := policy.New(cfg)
	st := &report.Stated{At: now.Format(time.RFC3339), KeyAges: []report.PersonKey{}}
	for i := range cfg.Persons {
		p := &cfg.Persons[i]
		if !slices.ContainsFunc(eng.Grants(p), func(g policy.Grant) bool { return g.Tenant == tenant }) {
			continue
		}
		st.Persons++
		for _, k := range report.KeysOf(p, now) {
			k.Person, k.Comment = p.ID, ""
			st.KeyAges = append(st.KeyAges, k)
		}
	}
	return st
}

func runPersonReport(cmd *cobra.Command, o reportFlags) error {
	cfg, v, gw, done, err := openReportSources(cmd, o.cfgPath)
	if err != nil {
		return err
	}
	defer done()
	r, err := report.BuildPerson(report.PersonOptions{AuditDir: auditDir(cfg), Keys: v, Config: cfg, Person: o.person, Now: clock.Now().UTC()})
	if err != nil {
		return err
	}
	if r.Config == nil && r.Records == 0 {
		return fmt.Errorf("tandem stores nothing about %q: not in the configuration, and no audit record names them", o.person)
	}
	var b bytes.Buffer
	if o.json {
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = r.WriteText(&b)
	}
	if err != nil {
		return err
	}
	if err := gw.Audit(cmd.Context(), audit.ReportCreatedEvent{Person: o.person, Kind: "person", Records: r.Records}.Event()); err != nil {
		return err
	}
	if o.out == "" {
		_, err = cmd.OutOrStdout().Write(b.Bytes())
		return err
	}
	return writePrivate(o.out, b.Bytes())
}

// reportPeriod parses --from and --to (days, UTC).
func reportPeriod(from, to string, now time.Time) (time.Time, time.Time, error) {
	toDay := now
	if to != "" {
		t, err := time.Parse(time.DateOnly, to)
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("--to: want YYYY-MM-DD: %w", err)
		}
		toDay = t
	}
	fromDay := toDay.AddDate(0, 0, -30)
	if from != "" {
		t, err := time.Parse(time.DateOnly, from)
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("--from: want YYYY-MM-DD: %w", err)
		}
		fromDay = t
	}
	if fromDay.After(toDay) {
		return time.Time{}, time.Time{}, fmt.Errorf("--from %s is after --to %s", fromDay.Format(time.DateOnly), toDay.Format(time.DateOnly))
	}
	return fromDay, toDay, nil
}

// writePrivate writes a file only its owner may read (0600), replacing
// any file there.
func writePrivate(path string, b []byte) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func printReportSummary(w io.Writer, ev *report.Evidence, out, pdf string) {
	f := ev.Figures
	fmt.Fprintf(w, "report:        tenant %s, %s to %s\n", ev.Tenant, ev.From, ev.To)
	fmt.Fprintf(w, "records:       %d (each with its inclusion proof)\n", f.Records)
	fmt.Fprintf(w, "sessions:      %d (four-eyes %d), refused %d, ended from outside %d\n", f.Sessions, f.FourEyesSessions, f.Refused, f.EndedFromOutside)
	fmt.Fprintf(w, "recordings:    %d reads and exports\n", f.RecordingAccess)
	var files []string
	for _, p := range []string{out, pdf} {
		if p != "" {
			files = append(files, p)
		}
	}
	fmt.Fprintf(w, "written:       %s\n", strings.Join(files, ", "))
	if out != "" {
		fmt.Fprintf(w, "auditors:      tandem report verify %s --pubkey tandem-audit.pub [--witness FILE]\n", out)
	}
}

func newReportVerifyCmd() *cobra.Command {
	var pubkey, witness string
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "check an evidence report offline: checkpoint, every record's proof, every figure, the page itself",
		Example: `  tandem report verify nord-2026-10.html --pubkey tandem-audit.pub
  tandem report verify nord-2026-10.html --pubkey tandem-audit.pub --witness witness.log`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pubkey == "" {
				return &usageError{cmd: cmd, err: fmt.Errorf("--pubkey is required: the audit log's verifier key (tandem audit pubkey)")}
			}
			key, err := os.ReadFile(pubkey)
			if err != nil {
				return err
			}
			page, err := readBounded(args[0], report.MaxFile)
			if err != nil {
				return err
			}
			c, err := report.Verify(page, strings.TrimSpace(string(key)), witness)
			if err != nil {
				return fmt.Errorf("report %s does not verify: %w", args[0], err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "checkpoint:    %s, size %d, signature OK\n", c.Origin, c.Size)
			if c.Witnessed {
				fmt.Fprintf(w, "witness:       holds this checkpoint\n")
			} else {
				fmt.Fprintf(w, "witness:       not given: a rewrite by whoever holds the signing key cannot be excluded\n")
			}
			fmt.Fprintf(w, "records:       %d, each in the log (inclusion proof) and of the tenant and period\n", c.Records)
			fmt.Fprintf(w, "figures:       derived again from the records: equal\n")
			fmt.Fprintf(w, "page:          rendered again from the evidence: equal\n")
			fmt.Fprintf(w, "result:        OK\n")
			return nil
		},
	}
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "the audit log's verifier key file (any key of its hand-over chain)")
	cmd.Flags().StringVar(&witness, "witness", "", "a witness's checkpoint file, which must hold the report's checkpoint")
	return cmd
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}
