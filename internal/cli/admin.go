package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"tandem.dev/tandem/internal/clock"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/admin"
	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/policy"
	"tandem.dev/tandem/internal/readable"
	"tandem.dev/tandem/internal/record"
	"tandem.dev/tandem/internal/store"
)

// localGateway is admin.Gateway for the commands run on the gateway host
// (`tandem lock`, `tandem recording export` …), so that they keep the
// rules and messages of their `ssh gw` twins. It works on the
// configuration file and the state store: it has no live sessions and no
// connections (the running gateway applies what the store says within a
// poll), and its audit events go to the store's outbox, which the running
// gateway, the audit log's only writer, appends.
type localGateway struct {
	ctx      context.Context // the command's, for the lock look-ups the policy asks for
	cfg      *config.Config
	eng      *policy.Engine
	st       *store.Store
	vault    *record.Vault // nil unless the command reads recordings
	operator string        // localActor(), recorded with every event
}

func newLocalGateway(ctx context.Context, cfg *config.Config, st *store.Store, vault *record.Vault) *localGateway {
	return &localGateway{ctx: ctx, cfg: cfg, eng: policy.New(cfg), st: st, vault: vault, operator: localActor()}
}

// runLocal runs f with the local gateway over the configuration at path
// and its state store.
func runLocal(cmd *cobra.Command, path string, f func(gw *localGateway) error) error {
	cfg, st, err := openStore(path)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(newLocalGateway(cmd.Context(), cfg, st, nil))
}

// operatorCaller is the local operator, acting on their own.
func (g *localGateway) operatorCaller() admin.Caller { return admin.Caller{Operator: g.operator} }

// personCaller is the local operator acting as person (--as).
func (g *localGateway) personCaller(p *config.Person) admin.Caller {
	return admin.Caller{Person: p, Operator: g.operator}
}

func (g *localGateway) Policy() (*config.Config, *policy.Engine)    { return g.cfg, g.eng }
func (g *localGateway) Now() time.Time                              { return clock.Now() }
func (g *localGateway) Requests() admin.Requests                    { return g.st }
func (g *localGateway) Sessions() []admin.SessionInfo               { return nil }
func (g *localGateway) Session(string) (admin.SessionInfo, bool)    { return admin.SessionInfo{}, false }
func (g *localGateway) Connections(admin.Caller) []admin.Connection { return nil }
func (g *localGateway) Log() *slog.Logger                           { return slog.Default() }

// EndRequestSessions ends nothing here: the running gateway ends the
// sessions of a request revoked in the store within a poll.
func (g *localGateway) EndRequestSessions(string, string) int { return 0 }

func (g *localGateway) Lock(ctx context.Context, l store.Lock) error { return g.st.Lock(ctx, l) }

func (g *localGateway) Unlock(ctx context.Context, person, by string) (bool, error) {
	return g.st.Unlock(ctx, person, by)
}

// LockReason reads person's lock from the store; a store it cannot read
// counts as a lock (fail closed).
func (g *localGateway) LockReason(person string) string {
	l, err := g.st.LockOf(g.ctx, person, clock.Now())
	switch {
	case err != nil:
		return "the lock table cannot be read: " + err.Error()
	case l == nil:
		return ""
	case l.Reason == "":
		return "locked by " + l.By
	}
	return l.Reason
}

func (g *localGateway) Library() readable.Library {
	// Cannot fail: the configuration refuses recording.storage: store
	// unless the state store is PostgreSQL.
	s, _ := recordingStorage(g.cfg, g.st, nil)
	return readable.Library{Vault: g.vault, Dir: recordingsDir(g.cfg), Storage: s, Config: g.cfg, Engine: g.eng}
}

// Reload is not done here: tandem reload signals the running gateway.
func (g *localGateway) Reload(context.Context, admin.Caller) ([]config.Change, error) {
	return nil, admin.ErrNoReload
}

// AuditEvents reads the audit log in the data directory, decrypting with
// the vault's keys.
func (g *localGateway) AuditEvents(f audit.Filter, fn func(audit.Record) error) error {
	v := g.vault
	if v == nil {
		var err error
		if v, err = openVault(g.cfg, false); err != nil {
			return err
		}
	}
	return audit.ReadKeys(auditDir(g.cfg), v, f, fn)
}

// Audit queues the event in the store's outbox for the gateway, with the
// operator who ran the command.
func (g *localGateway) Audit(ctx context.Context, e audit.Event) error {
	e.Time = clock.Now().UTC()
	if e.Attrs == nil {
		e.Attrs = map[string]string{}
	}
	e.Attrs[audit.KeyActor] = g.operator
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := g.st.QueueAudit(ctx, e.Time, b); err != nil {
		return fmt.Errorf("cannot queue the event in the audit outbox: %w", err)
	}
	return nil
}
