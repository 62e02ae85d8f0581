package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/breakglass"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/config"
)

// The break-glass files in data_dir/breakglass: the emergency CA's public
// key, the share files init writes (to hand out), the emergency records
// issue writes and, once report has imported them, records/imported.
func breakglassDir(cfg *config.Config) string {
	return filepath.Join(cfg.Gateway.DataDir, "breakglass")
}

const (
	bgCAFile      = "ca.pub"
	bgSharesDir   = "shares"
	bgRecordsDir  = "records"
	bgImportedDir = "imported"
)

func newBreakglassCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "breakglass",
		Short: "emergency access when the gateway is down: a split emergency CA, two persons issue a ≤1h certificate (M26)",
		Long: `Break-glass: when the gateway is down, administrators still reach targets,
under the same principles. An emergency user CA, which targets trust next to
the gateway's user CA (tandem target-config), has a private key that exists
only as shares: each holder's share is encrypted to them, and the shares of
two different persons are needed to issue one certificate, valid for at most
an hour. Every issue writes an emergency record signed by the emergency CA;
when the gateway is back, "tandem breakglass report" imports the records into
the audit log (breakglass.used). Until then the gateway's /readyz names them.`,
	}
	cmd.AddCommand(newBreakglassInitCmd(), newBreakglassIssueCmd(), newBreakglassReportCmd())
	return cmd
}

func newBreakglassInitCmd() *cobra.Command {
	var path, holders, out string
	var threshold int
	cmd := &cobra.Command{
		Use:   "init --holders P1,P2,P3 --threshold 2",
		Short: "create the emergency CA and one encrypted share per holder; the private key is never written",
		Long: `Create the emergency CA, offline, and split its private key into one share
per holder, threshold of which rebuild it. Each share is encrypted (age) to
its holder: to their age_recipient in the configuration, or else to their
ssh-ed25519 and ssh-rsa keys (a holder with only ECDSA or FIDO keys needs an
age_recipient). The private key exists only in memory and is never written.

Written to DIR (default data_dir/breakglass): ca.pub, the emergency CA's
public key, and shares/PERSON.share (0600). Hand each share file to its
holder, who keeps it where they can reach it when the gateway is down, and
remove it from here. A CA that exists is never replaced: targets trust it.`,
		Example: `  tandem breakglass init -c /etc/tandem/tandem.yaml --holders alice,bob,carol --threshold 2
  tandem target-config -c /etc/tandem/tandem.yaml    # now trusts the emergency CA too`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if out == "" {
				out = breakglassDir(cfg)
			}
			return breakglassInit(cmd, cfg, strings.Split(holders, ","), threshold, out)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&holders, "holders", "", "the persons who receive a share, comma-separated (required)")
	cmd.Flags().IntVar(&threshold, "threshold", 2, "how many holders' shares issue a certificate (at least 2)")
	cmd.Flags().StringVar(&out, "out", "", "directory for ca.pub and shares/ (default data_dir/breakglass)")
	return cmd
}

func breakglassInit(cmd *cobra.Command, cfg *config.Config, ids []string, threshold int, out string) error {
	caPath := filepath.Join(out, bgCAFile)
	if _, err := os.Stat(caPath); err == nil {
		return fmt.Errorf("%s exists: an emergency CA is set up, and targets trust it; remove it by hand (and from every target) to start over", caPath)
	}
	var holders []breakglass.Holder
	for _, id := range ids {
		p := cfg.Person(strings.TrimSpace(id))
		if p == nil {
			return fmt.Errorf("--holders: %q is not a configured person", id)
		}
		rs, err := holderRecipients(p)
		if err != nil {
			return err
		}
		holders = append(holders, breakglass.Holder{Person: p.ID, Recipients: rs})
	}
	pub, files, err := breakglass.Init(holders, threshold, clock.Now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(out, bgSharesDir), 0o700); err != nil {
		return err
	}
	for _, h := range holders {
		if err := writeNew(filepath.Join(out, bgSharesDir, h.Person+".share"), files[h.Person], 0o600); err != nil {
			return err
		}
	}
	// ca.pub last: a half-written init leaves no CA that targets might trust.
	if err := writeNew(caPath, []byte(breakglass.PublicLine(pub)+"\n"), 0o644); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "emergency CA %s: %d shares, %d needed\n", ssh.FingerprintSHA256(pub), len(holders), threshold)
	fmt.Fprintf(w, "public key: %s\n", caPath)
	for _, h := range holders {
		fmt.Fprintf(w, "share of %s: %s\n", h.Person, filepath.Join(out, bgSharesDir, h.Person+".share"))
	}
	fmt.Fprintln(w, "Hand each share to its holder and delete it here; then put the new \"tandem target-config\" on every target.")
	return nil
}

// holderRecipients are the keys a person's share is encrypted to: their
// age recipient, or else every SSH key of theirs that age can encrypt to.
func holderRecipients(p *config.Person) ([]age.Recipient, error) {
	if p.AgeRecipient != "" {
		return age.ParseRecipients(strings.NewReader(p.AgeRecipient))
	}
	var rs []age.Recipient
	for _, k := range p.Keys {
		if t := k.PublicKey.Type(); t != ssh.KeyAlgoED25519 && t != ssh.KeyAlgoRSA {
			continue
		}
		r, err := agessh.ParseRecipient(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.PublicKey))))
		if err != nil {
			return nil, fmt.Errorf("person %s: key %s: %w", p.ID, k.Fingerprint, err)
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("person %s has no ssh-ed25519 or ssh-rsa key to encrypt a share to; give them an age_recipient in the configuration", p.ID)
	}
	return rs, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newBreakglassIssueCmd() *cobra.Command {
	var path, login, host, reason, pubkey, out, caPub, records, source string
	var shares, identities []string
	var validFor time.Duration
	cmd := &cobra.Command{
		Use:   "issue --share FILE --identity KEY --share FILE --identity KEY --login L --host H --for 1h --reason TEXT",
		Short: "issue an emergency certificate (≤1h) from the shares of two different persons, and write its signed record",
		Long: `Issue an emergency certificate while the gateway is down. Each --share is a
holder's share file and the --identity at the same position opens it: the
holder's SSH private key (ed25519 or rsa, without passphrase) or age identity
file. The identity must belong to the person the share names; shares of two
different persons are needed (or the threshold, if higher). The rebuilt key
must be the published emergency CA (ca.pub), and exists only in memory.

The certificate is for the login, valid for at most an hour, and its key id
"tandem breakglass persons=alice,bob host=db1 reason=…" is what the target's
sshd logs. It certifies a fresh key written to --out (or your own --pubkey).
An emergency record, signed by the emergency CA, is written to
data_dir/breakglass/records (or --records); "tandem breakglass report"
imports it into the audit log when the gateway is back.`,
		Example: `  tandem breakglass issue -c /etc/tandem/tandem.yaml \
      --share alice.share --identity ~alice/.ssh/id_ed25519 \
      --share bob.share --identity bob-age-identity.txt \
      --login root --host db1 --for 1h --reason "INC-4711: gateway down, db1 disk full" --out ./db1-emergency
  ssh -i ./db1-emergency root@db1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if len(shares) != len(identities) {
				return fmt.Errorf("%d --share and %d --identity: give one identity per share, in the same order", len(shares), len(identities))
			}
			if caPub == "" {
				caPub = filepath.Join(breakglassDir(cfg), bgCAFile)
			}
			if records == "" {
				records = filepath.Join(breakglassDir(cfg), bgRecordsDir)
			}
			ca, err := readPublicKey(caPub)
			if err != nil {
				return fmt.Errorf("emergency CA: %w", err)
			}
			var opened []*breakglass.Opened
			defer func() {
				for _, o := range opened {
					o.Wipe()
				}
			}()
			for i := range shares {
				o, err := openHolderShare(cfg, shares[i], identities[i])
				if err != nil {
					return err
				}
				opened = append(opened, o)
			}
			return breakglassIssue(cmd, cfg, ca, opened, breakglass.Request{Login: login, Host: host, Reason: reason,
				For: validFor, SourceAddress: source, IssuedBy: localActor(), Now: clock.Now()}, pubkey, out, records)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringArrayVar(&shares, "share", nil, "a holder's share file (repeat: at least two persons)")
	cmd.Flags().StringArrayVar(&identities, "identity", nil, "the key that opens the --share at the same position: SSH private key or age identity file")
	cmd.Flags().StringVar(&login, "login", "", "the login on the target (the certificate's principal; required)")
	cmd.Flags().StringVar(&host, "host", "", "the host it is for (named in the key id and the record; required)")
	cmd.Flags().DurationVar(&validFor, "for", time.Hour, "validity, at most 1h")
	cmd.Flags().StringVar(&reason, "reason", "", "why: incident, ticket (required; goes into the key id and the audit log)")
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "certify this public key file instead of a fresh key")
	cmd.Flags().StringVar(&out, "out", "", "where to write the fresh key (FILE, FILE.pub) and certificate (FILE-cert.pub); default ./breakglass-HOST")
	cmd.Flags().StringVar(&source, "source-address", "", "restrict the certificate to these source addresses (CIDR list, comma-separated)")
	cmd.Flags().StringVar(&caPub, "ca-public", "", "the emergency CA's public key (default data_dir/breakglass/ca.pub)")
	cmd.Flags().StringVar(&records, "records", "", "directory for the emergency record (default data_dir/breakglass/records)")
	return cmd
}

// openHolderShare opens a share with an identity that must belong to the
// person the share names: a share is of its holder only, whoever holds
// the file.
func openHolderShare(cfg *config.Config, sharePath, idPath string) (*breakglass.Opened, error) {
	file, err := os.ReadFile(sharePath)
	if err != nil {
		return nil, err
	}
	info, err := breakglass.ReadShareInfo(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sharePath, err)
	}
	holder := cfg.Person(info.Holder)
	if holder == nil {
		return nil, fmt.Errorf("%s: the share's holder %q is not a configured person", sharePath, info.Holder)
	}
	ids, owner, err := readIdentity(cfg, idPath)
	if err != nil {
		return nil, err
	}
	if owner != holder.ID {
		return nil, fmt.Errorf("%s is the share of %s, but identity %s is not theirs (it belongs to %s): each share is opened by its own holder", sharePath, holder.ID, idPath, orUnknown(owner))
	}
	o, err := breakglass.OpenShare(file, ids...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sharePath, err)
	}
	return o, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "no configured person"
	}
	return s
}

// readIdentity reads an SSH private key or an age identity file and names
// the configured person it belongs to ("" if none).
func readIdentity(cfg *config.Config, path string) ([]age.Identity, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	defer clear(data)
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		signer, err := ssh.ParsePrivateKey(data)
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, "", fmt.Errorf("identity %s is protected by a passphrase, which this command does not ask for: use an unprotected copy on an offline machine, or an age identity", path)
		}
		if err != nil {
			return nil, "", fmt.Errorf("identity %s: %w", path, err)
		}
		id, err := agessh.ParseIdentity(data)
		if err != nil {
			return nil, "", fmt.Errorf("identity %s: age cannot decrypt with this key type (ed25519 and rsa only): %w", path, err)
		}
		p, _ := cfg.PersonByKey(signer.PublicKey())
		if p == nil {
			return []age.Identity{id}, "", nil
		}
		return []age.Identity{id}, p.ID, nil
	}
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, "", fmt.Errorf("identity %s: neither an SSH private key nor an age identity file", path)
	}
	owner := ""
	for _, id := range ids {
		var r string
		switch id := id.(type) {
		case *age.X25519Identity:
			r = id.Recipient().String()
		case *age.HybridIdentity:
			r = id.Recipient().String()
		}
		for _, p := range cfg.Persons {
			if p.AgeRecipient != "" && p.AgeRecipient == r {
				owner = p.ID
			}
		}
	}
	return ids, owner, nil
}

func readPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

func breakglassIssue(cmd *cobra.Command, cfg *config.Config, ca ssh.PublicKey, shares []*breakglass.Opened, req breakglass.Request, pubkey, out, records string) error {
	var priv *ecdsa.PrivateKey
	if pubkey != "" {
		k, err := readPublicKey(pubkey)
		if err != nil {
			return err
		}
		req.Key = k
		if out == "" {
			out = strings.TrimSuffix(pubkey, ".pub")
		}
	} else {
		// P-256, as the gateway's session keys: every profile accepts it.
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		priv = k
		if req.Key, err = ssh.NewPublicKey(&k.PublicKey); err != nil {
			return err
		}
		if out == "" {
			out = "breakglass-" + req.Host
		}
	}
	if cfg.Host(req.Host) == nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: host %q is not in the configuration; the certificate is valid on every target that trusts the emergency CA\n", req.Host)
	}
	cert, rec, recFile, err := breakglass.Issue(ca, shares, req)
	if err != nil {
		return err
	}
	// The record first: a certificate whose record cannot be written is
	// not handed out.
	if err := os.MkdirAll(records, 0o700); err != nil {
		return err
	}
	recPath := filepath.Join(records, rec.Issued.Format("20060102T150405Z")+"-"+rec.Serial+".json")
	if err := writeNew(recPath, recFile, 0o600); err != nil {
		return fmt.Errorf("emergency record: %w", err)
	}
	if priv != nil {
		block, err := ssh.MarshalPrivateKey(priv, "tandem breakglass "+rec.Serial)
		if err != nil {
			return err
		}
		if err := writeNew(out, pem.EncodeToMemory(block), 0o600); err != nil {
			return fmt.Errorf("key: %w", err)
		}
		if err := writeNew(out+".pub", ssh.MarshalAuthorizedKey(req.Key), 0o644); err != nil {
			return fmt.Errorf("key: %w", err)
		}
	}
	if err := writeNew(out+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "emergency certificate %s for %s@%s, valid %s until %s\n", rec.Serial, rec.Login, rec.Host,
		rec.ValidAfter.Format(time.RFC3339), rec.ValidBefore.Format(time.RFC3339))
	fmt.Fprintf(w, "key id: %s\n", rec.KeyID)
	fmt.Fprintf(w, "certificate: %s-cert.pub\n", out)
	fmt.Fprintf(w, "record: %s (run \"tandem breakglass report\" when the gateway is back)\n", recPath)
	if priv != nil {
		fmt.Fprintf(w, "use: ssh -i %s %s@%s\n", out, rec.Login, rec.Host)
	}
	return nil
}

func newBreakglassReportCmd() *cobra.Command {
	var path string
	var from []string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "import emergency records into the audit log (breakglass.used) and list the emergency certificates used",
		Long: `Verify every emergency record in data_dir/breakglass/records (and in each
--from directory, for records written on another machine) with the emergency
CA, queue one breakglass.used event per new record in the audit outbox (the
gateway appends it; it runs or its next start does), move the record to
records/imported, and list every record. A record whose signature does not
verify is not imported, is named, and makes the command fail.`,
		Example: `  tandem breakglass report -c /etc/tandem/tandem.yaml
  tandem breakglass report -c /etc/tandem/tandem.yaml --from /mnt/usb/records
  tandem audit show -c /etc/tandem/tandem.yaml --type breakglass.used`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLocal(cmd, path, func(gw *localGateway) error { return breakglassReport(cmd, gw, from) })
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringArrayVar(&from, "from", nil, "another directory with emergency records (repeatable)")
	return cmd
}

func breakglassReport(cmd *cobra.Command, gw *localGateway, from []string) error {
	dir := breakglassDir(gw.cfg)
	ca, err := readPublicKey(filepath.Join(dir, bgCAFile))
	if err != nil {
		return fmt.Errorf("emergency CA: %w", err)
	}
	recDir := filepath.Join(dir, bgRecordsDir)
	doneDir := filepath.Join(recDir, bgImportedDir)
	if err := os.MkdirAll(doneDir, 0o700); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	refused := 0
	for _, d := range append([]string{recDir}, from...) {
		for _, p := range recordFiles(d) {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rec, err := breakglass.VerifyRecord(ca, data)
			if err != nil {
				refused++
				fmt.Fprintf(w, "REFUSED  %s: %v\n", p, err)
				continue
			}
			done := filepath.Join(doneDir, filepath.Base(p))
			if _, err := os.Stat(done); err == nil {
				fmt.Fprintf(w, "known    %s\n", recordLine(rec))
				continue
			}
			if err := gw.Audit(cmd.Context(), usedEvent(gw.cfg, rec)); err != nil {
				return err
			}
			// Queued first, then moved: a crash between the two imports the
			// record again on the next run, with the same serial, rather
			// than never.
			if err := writeNew(done, data, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			if d == recDir {
				if err := os.Remove(p); err != nil {
					return err
				}
			}
			fmt.Fprintf(w, "imported %s\n", recordLine(rec))
		}
	}
	for _, p := range recordFiles(doneDir) {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rec, err := breakglass.VerifyRecord(ca, data); err == nil {
			fmt.Fprintf(w, "used     %s\n", recordLine(rec))
		}
	}
	if refused > 0 {
		return fmt.Errorf("%d emergency record(s) did not verify with the emergency CA: forged or altered; kept in place for investigation", refused)
	}
	return nil
}

// recordFiles lists the *.json files of dir, sorted (their names start
// with the time of issue).
func recordFiles(dir string) []string {
	ps, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	slices.Sort(ps)
	return ps
}

func recordLine(r breakglass.Record) string {
	return fmt.Sprintf("serial=%s persons=%s login=%s host=%s issued=%s valid_until=%s reason=%q",
		r.Serial, strings.Join(r.Persons, ","), r.Login, r.Host, r.Issued.Format(time.RFC3339), r.ValidBefore.Format(time.RFC3339), r.Reason)
}

func usedEvent(cfg *config.Config, r breakglass.Record) audit.Event {
	b := audit.BreakglassUsedEvent{Host: r.Host, Login: r.Login, Reason: r.Reason, Serial: r.Serial, KeyID: r.KeyID,
		Key: r.Key, CA: r.CA, ValidAfter: r.ValidAfter, ValidUntil: r.ValidBefore, Issued: r.Issued,
		IssuedBy: r.IssuedBy, SourceAddress: r.SourceAddress}
	if len(r.Persons) > 0 {
		b.Person, b.CoHolders = r.Persons[0], strings.Join(r.Persons[1:], ",")
	}
	if h := cfg.Host(r.Host); h != nil {
		b.Tenant = h.Tenant
	}
	return b.Event()
}

// pendingBreakglass counts emergency records not yet reported, for the
// readiness check: the use of emergency access stays visible until it is
// in the audit log.
func pendingBreakglass(cfg *config.Config) error {
	if n := len(recordFiles(filepath.Join(breakglassDir(cfg), bgRecordsDir))); n > 0 {
		return fmt.Errorf("%d emergency certificate(s) issued and not reported: run tandem breakglass report", n)
	}
	return nil
}

// breakglassTrust is the emergency CA's line for targets'
// TrustedUserCAKeys, or "" when no emergency CA is set up.
func breakglassTrust(cfg *config.Config) (string, error) {
	pub, err := readPublicKey(filepath.Join(breakglassDir(cfg), bgCAFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("emergency CA: %w", err)
	}
	return breakglass.PublicLine(pub), nil
}
