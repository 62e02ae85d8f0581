package cli

import (
	"context"
	"crypto/rand"
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

// onSignal reloads for a SIGHUP, by the person of a pending request, and
// leaves the outcome for the tandem reload that asked.
func (r *reloader) onSignal(ctx context.Context) {
	dataDir := r.config().Gateway.DataDir
	by := takeReloadRequest(dataDir, clock.Now(), r.log)
	changes, err := r.reload(ctx, by)
	res := reloadResult{ID: by.RequestID, Changes: len(changes)}
	if err != nil {
		r.log.Error(err.Error())
		res.Error = err.Error()
	}
	if by.RequestID != "" {
		if werr := writeJSONFile(reloadResultPath(dataDir), res); werr != nil {
			r.log.Warn("cannot leave the reload's outcome for tandem reload", "err", werr)
		}
	}
}

// reloadResult is what the gateway leaves for the tandem reload whose
// request it took: the reload is recorded and applied, or why not.
type reloadResult struct {
	ID      string `json:"id"`
	Changes int    `json:"changes"`
	Error   string `json:"error,omitempty"`
}

func reloadResultPath(dataDir string) string { return filepath.Join(dataDir, "reload-result") }

// reloadRequest is the file tandem reload leaves for the gateway.
type reloadRequest struct {
	ID     string    `json:"id"` // names the outcome the gateway leaves (reload-result)
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
	return reloadBy{Person: req.Person, Actor: req.Actor, Trigger: "tandem reload", RequestID: req.ID}
}

func newReloadCmd() *cobra.Command {
	var path, by string
	cmd := &cobra.Command{
		Use:   "reload --by PERSON",
		Short: "reload the running gateway's configuration, recorded as PERSON's change (M12)",
		Long: `Check the configuration file, then have the running gateway (tandem serve
with the same data directory) reload it. The reload and every change it
makes are recorded in the audit log as PERSON's (config.reload,
config.change), with you as the local actor. The command returns once the
gateway has recorded and applied the reload, or says why it refused it (the
running configuration then stays). A bare SIGHUP reloads too, but is
recorded as by "unknown (signal)".`,
		Example: `  tandem reload --by alice -c /etc/tandem/tandem.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if cfg.Person(by) == nil {
				return fmt.Errorf("--by %q: no such person in %s; name who made the change", by, path)
			}
			res, err := requestReload(cfg.Gateway.DataDir, reloadRequest{ID: rand.Text(), Person: by, Actor: localActor(), Time: clock.Now().UTC()})
			if err != nil {
				return err
			}
			if res.Error != "" {
				return fmt.Errorf("the gateway refused the reload; it runs on with its configuration: %s", safetext.Line(res.Error))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the gateway reloaded %s as changed by %s: %d change(s), recorded; see tandem audit show --type config.reload,config.change\n",
				safetext.Line(path), safetext.Line(by), res.Changes)
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&by, "by", "", "the person who made the change (required)")
	_ = cmd.MarkFlagRequired("by")
	return cmd
}

// requestReload leaves req for the gateway, signals it, and waits until it
// took the request (5 s at most) and left the outcome (30 s at most: the
// reload is recorded in the audit log first, which waits for its disk).
func requestReload(dataDir string, req reloadRequest) (reloadResult, error) {
	pid, err := servingPid(dataDir)
	if err != nil {
		return reloadResult{}, err
	}
	_ = os.Remove(reloadResultPath(dataDir))
	if err := writeJSONFile(reloadRequestPath(dataDir), req); err != nil {
		return reloadResult{}, fmt.Errorf("reload request: %w", err)
	}
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Signal(syscall.SIGHUP)
	}
	if err != nil {
		_ = os.Remove(reloadRequestPath(dataDir))
		return reloadResult{}, fmt.Errorf("cannot signal the gateway (pid %d): %w", pid, err)
	}
	taken := false
	for end := time.Now().Add(5 * time.Second); !taken && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		_, err := os.Stat(reloadRequestPath(dataDir))
		taken = errors.Is(err, fs.ErrNotExist)
	}
	if !taken {
		return reloadResult{}, fmt.Errorf("the gateway (pid %d) did not take the reload request within 5s; is it running?", pid)
	}
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		var res reloadResult
		if b, err := os.ReadFile(reloadResultPath(dataDir)); err == nil && json.Unmarshal(b, &res) == nil && res.ID == req.ID {
			_ = os.Remove(reloadResultPath(dataDir))
			return res, nil
		}
	}
	return reloadResult{}, fmt.Errorf("the gateway (pid %d) took the reload request but left no outcome within 30s; see its log and tandem audit show --type config.reload", pid)
}

// writeJSONFile writes v whole (0600) or not at all.
func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
