package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/disclose"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/vault"
)

// newTenantCmd is "tandem tenant": the end of a tenant's contract (M23):
// its data handed over encrypted, then destroyed by two persons.
func newTenantCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "contract end: hand a tenant's data over encrypted, then destroy it (two persons)",
		Example: `  tandem tenant handover -c /etc/tandem/tandem.yaml --tenant schule-nord --to nord.asc --out nord-handover.tar.gpg --by alice
  # remove the tenant and its hosts from the configuration, tandem reload --by alice, then:
  tandem tenant destroy -c /etc/tandem/tandem.yaml --tenant schule-nord --by alice
  tandem tenant destroy -c /etc/tandem/tandem.yaml --tenant schule-nord --by bob      # a second person: the keys go`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTenantHandoverCmd(), newTenantDestroyCmd())
	return cmd
}

// contractPerson checks --by: an employee with the permission configure.
func contractPerson(cfg *config.Config, by string) error {
	if by == "" {
		return errors.New("--by PERSON is required: who does this, in the audit log")
	}
	if d := policy.New(cfg).MayEndContract(cfg.Person(by)); d.Verdict != policy.Allow {
		return errors.New(d.Reason)
	}
	return nil
}

func newTenantHandoverCmd() *cobra.Command {
	var cfgPath, tenant, to, out, by string
	cmd := &cobra.Command{
		Use:   "handover",
		Short: "write every audit record and recording of a tenant, encrypted to the tenant's key, with a manifest and proofs",
		Long: `Writes one file: a tar archive encrypted to the key in --to (an age
recipient, an SSH public key or an armored OpenPGP public key) of
manifest.json (every record of the tenant with its inclusion proof and the
keys that open it, the signed checkpoint, the SHA-256 of every file),
events.jsonl (the records decoded) and every recording of the tenant as
asciicast. Keystrokes typed at secret prompts are not included. The
hand-over is recorded (tenant.handover) before the file appears; the
tenant's data can be destroyed only after one (tandem tenant destroy).`,
		Example: `  tandem tenant handover -c /etc/tandem/tandem.yaml --tenant schule-nord --to nord.asc --out nord-handover.tar.gpg --by alice
  gpg -d nord-handover.tar.gpg | tar x -C nord && tandem disclose verify nord --pubkey tandem-audit.pub   # the tenant`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" || to == "" || out == "" {
				return &usageError{cmd: cmd, err: errors.New("--tenant, --to and --out are required")}
			}
			if err := vault.CheckName("tenant", tenant); err != nil {
				return err
			}
			key, err := readBounded(to, disclose.MaxRecipientKey)
			if err != nil {
				return err
			}
			rcpt, err := disclose.ParseRecipient(string(key))
			if err != nil {
				return err
			}
			cfg, v, gw, done, err := openReportSources(cmd, cfgPath)
			if err != nil {
				return err
			}
			defer done()
			if err := contractPerson(cfg, by); err != nil {
				return err
			}
			now := clock.Now()
			info := disclose.CaseInfo{ID: "handover-" + tenant, Tenant: tenant, Scope: "tenant:" + tenant,
				LegalBasis: "end of the contract (M23)", Reason: "hand-over of the tenant's data", Requester: by,
				Recipient: rcpt.String(), Requested: now.UTC().Format("2006-01-02T15:04:05Z07:00")}
			rs, err := recordingStorage(cfg, gw.st, nil)
			if err != nil {
				return err
			}
			res, err := disclose.WriteBundle(disclose.ExportOptions{AuditDir: auditDir(cfg), DataDir: cfg.Gateway.DataDir, Recordings: rs, Vault: v, Out: out, Now: now,
				Record: func(r disclose.Result) error {
					return gw.Audit(cmd.Context(), audit.TenantHandoverEvent{Tenant: tenant, Recipient: rcpt.String(), Path: r.Path,
						SHA256: r.SHA256, Records: r.Records, Recordings: r.Recordings, By: by}.Event())
				}}, disclose.Bundle{Info: info, Filter: audit.Filter{Tenant: tenant}, Recipient: rcpt, AllRecordings: true})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s handed over to %s (%s): %d records, %d recordings\nsha256 %s\n", tenant, res.Path, rcpt, res.Records, res.Recordings, res.SHA256)
			return nil
		},
	}
	configFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant")
	cmd.Flags().StringVar(&to, "to", "", "file with the tenant's public key: age recipient, SSH public key or armored OpenPGP key")
	cmd.Flags().StringVar(&out, "out", "", "the encrypted file to write (never replaced)")
	cmd.Flags().StringVar(&by, "by", "", "the person handing over (permission configure)")
	return cmd
}

func newTenantDestroyCmd() *cobra.Command {
	var cfgPath, tenant, by string
	cmd := &cobra.Command{
		Use:   "destroy",
		Short: "destroy every data key of a tenant after its hand-over: asked by one person, done when a second confirms",
		Long: `Destroys the tenant's data for good: every data key of the tenant (audit
fields of every class and day, recordings, sealed keystrokes) in the
vault and in the backups' key escrow, then the tenant's recording files.
Afterwards nothing of the tenant can be read anywhere, and "tandem audit
verify" still proves the log ("--deep" reports the tenant's records
shredded).

Two persons: the first run records the request (tenant.destroy,
requested); a run by a second person confirms it and destroys. Refused
unless the tenant's data was handed over (tandem tenant handover), the
configuration in force no longer holds the tenant or its hosts (remove
them and reload first, so that nothing new is written for it), and no
legal hold keeps any of its data.`,
		Example: `  tandem tenant destroy -c /etc/tandem/tandem.yaml --tenant schule-nord --by alice
  tandem tenant destroy -c /etc/tandem/tandem.yaml --tenant schule-nord --by bob`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant == "" {
				return &usageError{cmd: cmd, err: errors.New("--tenant is required")}
			}
			if err := vault.CheckName("tenant", tenant); err != nil {
				return err
			}
			cfg, st, v, err := localRetention(cfgPath)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := contractPerson(cfg, by); err != nil {
				return err
			}
			gw := newLocalGateway(cmd.Context(), cfg, st, v)
			step, err := destroyStep(auditDir(cfg), v, tenant, by)
			if err != nil {
				return err
			}
			if cfg.Tenant(tenant) != nil {
				return fmt.Errorf("%s is still in the configuration: remove the tenant and its hosts and reload first, so that nothing new is written for it", tenant)
			}
			for _, h := range cfg.Hosts {
				if h.Tenant == tenant {
					return fmt.Errorf("host %s of %s is still in the configuration: remove it and reload first", h.Name, tenant)
				}
			}
			w := cmd.OutOrStdout()
			if step == "requested" {
				if err := gw.Audit(cmd.Context(), audit.TenantDestroyEvent{Tenant: tenant, Phase: "requested", By: by}.Event()); err != nil {
					return err
				}
				fmt.Fprintf(w, "destruction of %s requested by %s; a second person confirms it with tandem tenant destroy --tenant %s --by OTHER\n", tenant, by, tenant)
				fmt.Fprintln(w, "(the request must reach the audit log first: the running gateway appends it within seconds)")
				return nil
			}
			if err := gw.Audit(cmd.Context(), audit.TenantDestroyEvent{Tenant: tenant, Phase: "confirmed", By: by}.Event()); err != nil {
				return err
			}
			job := newRetentionJob(cfg, v, st, outboxSink{gw}, slog.New(slog.DiscardHandler))
			keys, err := job.DestroyTenant(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			files, err := removeTenantFiles(cfg.Gateway.DataDir, tenant)
			if err != nil {
				return err
			}
			if err := gw.Audit(context.WithoutCancel(cmd.Context()), audit.TenantDestroyEvent{Tenant: tenant, Phase: "done", By: by,
				KeysDestroyed: len(keys), Files: files}.Event()); err != nil {
				return fmt.Errorf("%s destroyed (%d keys), but the record of it is not queued: %w", tenant, len(keys), err)
			}
			fmt.Fprintf(w, "%s destroyed: %d data key(s), %d recording file(s); nothing of it can be read any more\n", tenant, len(keys), files)
			return nil
		},
	}
	configFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant")
	cmd.Flags().StringVar(&by, "by", "", "the person asking or confirming (permission configure)")
	return cmd
}

// destroyStep reads the tenant's hand-over and destruction records from
// the log and says what a run by `by` does: "requested" (the first
// person) or "confirm" (a second person, or a run to finish one that was
// confirmed but not done).
func destroyStep(dir string, keys audit.KeyReader, tenant, by string) (string, error) {
	handedOver := false
	requester, confirmed, done := "", false, false
	types := []audit.Type{audit.TenantHandover, audit.TenantDestroy}
	err := audit.ReadKeys(dir, keys, audit.Filter{Types: types}, func(r audit.Record) error {
		a := r.Event.Attrs
		if a[audit.KeyContractTenant] != tenant {
			return nil
		}
		if r.Event.Type == audit.TenantHandover {
			handedOver = true
			return nil
		}
		switch a[audit.KeyPhase] {
		case "requested":
			requester, confirmed, done = a[audit.KeyBy], false, false
		case "confirmed":
			confirmed = true
		case "done":
			done = true
		}
		return nil
	})
	switch {
	case err != nil:
		return "", err
	case !handedOver:
		return "", fmt.Errorf("%s was not handed over (tandem tenant handover); its data is destroyed only after", tenant)
	case done:
		return "", fmt.Errorf("%s is destroyed already", tenant)
	case confirmed:
		return "confirm", nil // finish an interrupted destruction
	case requester == "":
		return "requested", nil
	case requester == by:
		return "", fmt.Errorf("%s asked for the destruction of %s; a second person must confirm it", by, tenant)
	}
	return "confirm", nil
}

// removeTenantFiles removes the tenant's recording and sealed-keystroke
// files, whose keys are destroyed, and says how many recordings went.
func removeTenantFiles(dataDir, tenant string) (int, error) {
	headers, _ := record.List(dataDir, tenant)
	for _, sub := range []string{"recordings", "sealed"} {
		dir := filepath.Join(dataDir, sub, tenant)
		if !strings.HasPrefix(dir, filepath.Join(dataDir, sub)+string(filepath.Separator)) {
			return 0, fmt.Errorf("bad tenant id %q", tenant)
		}
		if err := os.RemoveAll(dir); err != nil {
			return 0, err
		}
	}
	return len(headers), nil
}
