package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"tandem.dev/tandem/internal/clock"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/gateway"
	"tandem.dev/tandem/internal/safetext"
)

// A reload names who made it (M12). `ssh gw reload` runs in the gateway
// and knows its person. A signal cannot carry a name, so `tandem reload
// --by PERSON` leaves a request file in the data directory and then sends
// SIGHUP to the serving process; the gateway takes the file with the
// signal. A bare SIGHUP is recorded as "unknown (signal)".

// reloader applies reloads one at a time, to the configuration in force.
type reloader struct {
	mu      sync.Mutex
	current *config.Config
	srv     *gateway.Server
	sink    audit.Sink
	log     *slog.Logger
}

// config returns the configuration in force now.
func (r *reloader) config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// reload re-reads the configuration file, records who reloaded and every
// change (no record, no reload) and applies it. The running configuration
// stays on any error.
func (r *reloader) reload(ctx context.Context, by reloadBy) ([]config.Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := config.Load(r.current.Path)
	if err != nil {
		return nil, fmt.Errorf("configuration reload refused; the running configuration stays: %w", err)
	}
	changes := config.Diff(r.current, next)
	if err := recordChanges(ctx, r.sink, r.current, next, changes, by); err != nil {
		return nil, fmt.Errorf("configuration reload refused: cannot audit it: %w", err)
	}
	if err := r.srv.Reload(next); err != nil {
		return nil, fmt.Errorf("configuration reload refused: %w", err)
	}
	r.current = next
	r.log.Info("configuration reloaded", "digest", next.Digest(), "by", by.Person, "trigger", by.Trigger, "changes", len(changes))
	return changes, nil
}

// byPerson is the gateway's hook for `ssh gw reload`.
func (r *reloader) byPerson(ctx context.Context, person, source string) ([]config.Change, error) {
	return r.reload(ctx, reloadBy{Person: person, Source: source, Trigger: "ssh gw reload"})
}

// onSignal reloads for a SIGHUP, by the person of a pending request.
func (r *reloader) onSignal(ctx context.Context) {
	by := takeReloadRequest(r.config().Gateway.DataDir, clock.Now(), r.log)
	if _, err := r.reload(ctx, by); err != nil {
		r.log.Error(err.Error())
	}
}

// reloadRequest is the file tandem reload leaves for the gateway.
type reloadRequest struct {
	Person string    `json:"person"`
	Actor  string    `json:"actor"`
	Time   time.Time `json:"time"`
}

// requestMaxAge is how old a request may be when its signal arrives; an
// older one was left by a tandem reload whose signal never came, and
// names nobody for this one.
const requestMaxAge = time.Minute

func reloadRequestPath(dataDir string) string { return filepath.Join(dataDir, "reload-request") }

// takeReloadRequest reads and removes the pending request: who asked for
// the reload being signalled, or nobody (a bare SIGHUP).
func takeReloadRequest(dataDir string, now time.Time, log *slog.Logger) reloadBy {
	bare := reloadBy{Trigger: "signal"}
	path := reloadRequestPath(dataDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return bare
	}
	_ = os.Remove(path)
	var req reloadRequest
	if err == nil {
		err = json.Unmarshal(b, &req)
	}
	switch {
	case err != nil:
		log.Warn("reload request unreadable; the reload is recorded as by nobody", "err", err)
		return bare
	case now.Sub(req.Time) > requestMaxAge || req.Person == "":
		log.Warn("reload request stale or without a person; the reload is recorded as by nobody", "requested", req.Time)
		return bare
	}
	return reloadBy{Person: req.Person, Actor: req.Actor, Trigger: "tandem reload"}
}

func newReloadCmd() *cobra.Command {
	var path, by string
	cmd := &cobra.Command{
		Use:   "reload --by PERSON",
		Short: "reload the running gateway's configuration, recorded as PERSON's change (M12)",
		Long: `Check the configuration file, then have the running gateway (tandem serve
with the same data directory) reload it. The reload and every change it
makes are recorded in the audit log as PERSON's (config.reload,
config.change), with you as the local actor. A bare SIGHUP reloads too, but
is recorded as by "unknown (signal)".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if cfg.Person(by) == nil {
				return fmt.Errorf("--by %q: no such person in %s; name who made the change", by, path)
			}
			if err := requestReload(cfg.Gateway.DataDir, reloadRequest{Person: by, Actor: localActor(), Time: clock.Now().UTC()}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the gateway reloads %s as changed by %s; see tandem audit show --type config.reload,config.change\n",
				safetext.Line(path), safetext.Line(by))
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&by, "by", "", "the person who made the change (required)")
	_ = cmd.MarkFlagRequired("by")
	return cmd
}

// requestReload leaves req for the gateway, signals it, and waits until it
// took the request (5 s at most).
func requestReload(dataDir string, req reloadRequest) error {
	pid, err := servingPid(dataDir)
	if err != nil {
		return err
	}
	if err := writeRequest(reloadRequestPath(dataDir), req); err != nil {
		return err
	}
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Signal(syscall.SIGHUP)
	}
	if err != nil {
		_ = os.Remove(reloadRequestPath(dataDir))
		return fmt.Errorf("cannot signal the gateway (pid %d): %w", pid, err)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(reloadRequestPath(dataDir)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	return fmt.Errorf("the gateway (pid %d) did not take the reload request within 5s; is it running?", pid)
}

// writeRequest writes req whole (0600) or not at all.
func writeRequest(path string, req reloadRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("reload request: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("reload request: %w", err)
	}
	return nil
}
