package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/ca"
	"tandem.dev/tandem/internal/clock"
	"tandem.dev/tandem/internal/config"
)

func newCARotateCmd() *cobra.Command {
	var path, kind string
	var finish, force, retire bool
	cmd := &cobra.Command{
		Use:   "rotate --kind user|host [--finish [--force] | --retire]",
		Short: "replace a CA without breaking trust: publish a new key, sign with it after an overlap, retire the old one",
		Long: `Rotate the user CA (trusted by targets) or the host CA (trusted by clients)
in three steps, each recorded in the audit log as ca.rotated:

  (no flag)  create the next key and publish it beside the current one:
             "ca public", "target-config" and "client-config" print both.
             The gateway still signs with the current key. Roll the new
             lines out to every target and client during the overlap
             (gateway.ca_overlap, default 7d).
  --finish   sign with the new key. Refused before the overlap has passed
             unless --force. The old key is kept as <ca>.retired-<time> and
             still published, so a target or client that missed the
             roll-out keeps working until you retire it. A running gateway
             finishes by itself once the overlap has passed.
  --retire   stop publishing the old key; remove its line from targets and
             clients. The retired key file stays in data_dir/keys.

Every step can be run again: an interrupted step is completed, a finished
one reports where the rotation stands. A running gateway picks up a
finished rotation within seconds.`,
		Example: `  tandem ca rotate --kind user -c /etc/tandem/tandem.yaml
  tandem target-config -c /etc/tandem/tandem.yaml     # roll out: both CA lines
  tandem ca rotate --kind user --finish               # after gateway.ca_overlap
  tandem ca rotate --kind user --retire               # then drop the old line on targets
  tandem ca rotate --kind host --finish --force       # before the overlap ends`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if finish && retire {
				return errors.New("--finish and --retire are separate steps; run --finish first")
			}
			if force && !finish {
				return errors.New("--force only applies to --finish")
			}
			return runLocal(cmd, path, func(gw *localGateway) error {
				dir := keyDir(gw.cfg)
				// The CAs must exist before one can be replaced.
				if _, err := ca.LoadOrCreateType(dir, nil, gw.cfg.Gateway.KeyType); err != nil {
					return err
				}
				now := clock.Now()
				var r ca.Rotation
				var changed bool
				var err error
				step := "start"
				switch {
				case retire:
					step = "retire"
					r, changed, err = ca.RetireRotation(dir, ca.Kind(kind))
				case finish:
					step = "finish"
					r, changed, err = ca.FinishRotation(dir, ca.Kind(kind), now, force)
				default:
					r, changed, err = ca.StartRotation(dir, ca.Kind(kind), gw.cfg.Gateway.KeyType, gw.cfg.Gateway.CAOverlap.Duration, now)
				}
				if err != nil {
					return err
				}
				if changed {
					if err := gw.Audit(cmd.Context(), rotatedEvent(r, step, "tandem ca rotate")); err != nil {
						return fmt.Errorf("the %s CA's rotation step %s took effect, but %w", kind, step, err)
					}
				}
				describeRotation(cmd.OutOrStdout(), gw.cfg, ca.Kind(kind), step, r, changed)
				return nil
			})
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&kind, "kind", "", "which CA: user or host (required)")
	cmd.Flags().BoolVar(&finish, "finish", false, "sign with the new key (after the overlap)")
	cmd.Flags().BoolVar(&force, "force", false, "with --finish: do not wait for the overlap to pass")
	cmd.Flags().BoolVar(&retire, "retire", false, "stop publishing the old key of a finished rotation")
	_ = cmd.MarkFlagRequired("kind")
	return cmd
}

func rotatedEvent(r ca.Rotation, step, trigger string) audit.Event {
	e := audit.CARotatedEvent{Kind: string(r.Kind), Phase: step, OldKey: r.Old, NewKey: r.New, Trigger: trigger}
	if step == "start" {
		e.Until = r.Until
	}
	return e.Event()
}

// describeRotation says where the rotation stands and what to do next.
func describeRotation(w io.Writer, cfg *config.Config, kind ca.Kind, step string, r ca.Rotation, changed bool) {
	trustCmd := "target-config"
	if kind == ca.Host {
		trustCmd = "client-config"
	}
	if r.Kind == "" {
		fmt.Fprintf(w, "no rotation of the %s CA in progress\n", kind)
		return
	}
	if step == "retire" {
		fmt.Fprintf(w, "%s CA's old key %s retired: no longer published; remove its line from every %s.\n",
			kind, r.Old, map[ca.Kind]string{ca.User: "target's TrustedUserCAKeys", ca.Host: "client's known_hosts"}[kind])
		return
	}
	if !changed {
		fmt.Fprint(w, "already done; ")
	}
	switch r.Phase {
	case ca.Overlap:
		fmt.Fprintf(w, "%s CA rotation started: new key %s published beside %s.\nRoll out \"tandem %s -c %s\" (it prints both) before %s, then run --finish.\n",
			kind, r.New, r.Old, trustCmd, configName(cfg), r.Until.Local().Format(time.RFC3339))
	case ca.Finished:
		fmt.Fprintf(w, "%s CA rotation finished: the gateway signs with %s; the old key %s (%s) is still published.\nOnce every target and client trusts the new key, run --retire and remove the old line.\n",
			kind, r.New, r.Old, r.Retired)
		if kind == ca.Host {
			// A running gateway re-reads the keys every rotationInterval,
			// and its host certificates come from a live signer.
			fmt.Fprintln(w, "A running gateway presents host certificates of the new CA within a few seconds.")
		}
	default:
		fmt.Fprintf(w, "%s CA rotation in phase %s\n", kind, r.Phase)
	}
}

// rotationInterval is how often the gateway looks at the rotation state.
const rotationInterval = 2 * time.Second

// watchRotation makes the running gateway follow CA rotations: it
// finishes one whose overlap has passed (or that a crash interrupted),
// and signs with whatever CA key the key directory holds now.
func watchRotation(ctx context.Context, cfg *config.Config, keys *ca.Keys, sink audit.Sink, log *slog.Logger) {
	t := time.NewTicker(rotationInterval)
	defer t.Stop()
	for {
		done, err := ca.FinishDue(keyDir(cfg), clock.Now())
		for _, r := range done {
			audit.BestEffort(ctx, sink, log, rotatedEvent(r, "finish", "overlap ended"))
		}
		if err != nil {
			log.Error("CA rotation", "err", err)
		}
		changed, err := keys.Refresh()
		if err != nil {
			log.Error("CA keys cannot be re-read; the keys in use stay", "err", err)
		}
		for _, k := range changed {
			log.Info("signing with the rotated CA", "kind", k)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
