package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL server (Debian's postgresql package) on
// 127.0.0.1 and a port of its own, with its data in a directory of its
// own. It takes only TLS connections (hostssl in pg_hba.conf; the server
// certificate comes from a test CA, for 127.0.0.1 and localhost), and
// trusts the superuser "tandem" on loopback, so tests need no password.
// PostgreSQL refuses to run as root: as root (CI) it runs as the
// "postgres" system user (or "nobody"), which owns its directory.
type Postgres struct {
	Port int
	CA   string // the CA file that verifies the server's certificate
	Dir  string // the server's directory (data, certificates); removed by Remove

	Stderr *SyncBuffer

	bin  string // the directory of initdb and postgres
	cred *syscall.Credential
	data string
	proc *process
	dbs  atomic.Int64
}

// FindPostgres returns the directory holding Debian's PostgreSQL server
// programs (/usr/lib/postgresql/<newest>/bin), or the directory of a
// postgres program in PATH; the error names the package to install.
func FindPostgres() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "postgres")) && isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		if p, err := filepath.EvalSymlinks(p); err == nil && isExec(filepath.Join(filepath.Dir(p), "initdb")) {
			return filepath.Dir(p), nil
		}
	}
	return "", errors.New("PostgreSQL server not found (initdb and postgres); install it with: " +
		"apt-get install -y --no-install-recommends postgresql (or run scripts/test-deps.sh)")
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// StartPostgres creates a cluster in a new directory under the system's
// temporary directory (not a test's TempDir: the server's user must be
// able to reach it) and starts the server. Stop and Start restart it on
// the same data; Remove stops it and deletes the directory.
func StartPostgres() (*Postgres, error) {
	bin, err := FindPostgres()
	if err != nil {
		return nil, err
	}
	port, err := PickPort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tandem-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{Port: port, Dir: dir, Stderr: &SyncBuffer{}, bin: bin, data: filepath.Join(dir, "data")}
	if err := p.setUp(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// setUp makes the certificates and the cluster, owned by the server's user.
func (p *Postgres) setUp() error {
	pki, err := MakePKI(filepath.Join(p.Dir, "tls"), "tandem test PostgreSQL CA")
	if err != nil {
		return err
	}
	p.CA = pki.CA
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			return fmt.Errorf("PostgreSQL refuses to run as root, and there is no postgres or nobody user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The directory is root's (0700 from MkdirTemp): the server's user
		// may pass through it, and owns what it needs.
		if err := os.Chmod(p.Dir, 0o711); err != nil {
			return err
		}
		for _, f := range []string{filepath.Join(p.Dir, "tls"), pki.ServerCert, pki.ServerKey, pki.CA} {
			if err := os.Chown(f, uid, gid); err != nil {
				return err
			}
		}
		if err := os.Mkdir(p.data, 0o700); err != nil {
			return err
		}
		if err := os.Chown(p.data, uid, gid); err != nil {
			return err
		}
	}
	cmd := exec.Command(filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", "tandem", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Dir = p.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// TLS only: a plain connection is rejected by the server itself.
	hba := "hostssl all tandem 127.0.0.1/32 trust\nhost all all 0.0.0.0/0 reject\n"
	conf := fmt.Sprintf(`listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = ''
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
ssl_min_protocol_version = 'TLSv1.2'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
`, p.Port, pki.ServerCert, pki.ServerKey)
	for name, text := range map[string]string{"pg_hba.conf": hba, "postgresql.auto.conf": conf} {
		path := filepath.Join(p.data, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return err
		}
		if p.cred != nil {
			if err := os.Chown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Start starts the server (again, after Stop) and waits until it accepts
// connections.
func (p *Postgres) Start() error {
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.data)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = p.Stderr, p.Stderr
	proc, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p.proc = proc
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, p.DSN("postgres"))
		if err == nil {
			c.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		if proc.exited() || time.Now().After(deadline) {
			p.Stop() //nolint:errcheck // the start failed; that is the error
			return fmt.Errorf("postgres did not come up: %v\n%s", err, p.Stderr.Tail(3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down at once (SIGINT: PostgreSQL's fast shutdown,
// which ends every client's connection, as a restart by an operator
// does), SIGKILL after 15 s. Stopping twice is harmless.
func (p *Postgres) Stop() error {
	proc := p.proc
	if proc == nil || proc.exited() {
		return nil
	}
	_ = proc.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-proc.done:
		return nil
	case <-time.After(15 * time.Second):
	}
	_ = proc.cmd.Process.Kill()
	select {
	case <-proc.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("postgres %d did not end after SIGKILL", proc.cmd.Process.Pid)
	}
}

// Remove stops the server and deletes its directory.
func (p *Postgres) Remove() error {
	err := p.Stop()
	return errors.Join(err, os.RemoveAll(p.Dir))
}

// DSN is the connection string of database db: TLS with the certificate
// verified against the test CA, as production must (sslmode=verify-full).
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=tandem dbname=%s sslmode=verify-full sslrootcert=%s connect_timeout=5",
		p.Port, db, p.CA)
}

// CreateDatabase creates a new, empty database and returns its DSN.
func (p *Postgres) CreateDatabase() (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), p.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to postgres: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return p.DSN(name), nil
}

// NewDatabase is CreateDatabase for a test: a database of its own.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	dsn, err := p.CreateDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// RequirePostgres starts a server for this test, removed by its cleanup.
// Without PostgreSQL installed the test is skipped, or fails under
// CI=true.
func RequirePostgres(t testing.TB) *Postgres {
	t.Helper()
	p, err := StartPostgres()
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(func() {
		if err := p.Remove(); err != nil {
			t.Errorf("remove postgres: %v", err)
		}
	})
	return p
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if InCI() {
		t.Fatal(err)
	}
	t.Skip(err.Error())
}

// shared is one server for a whole test package (SharedPostgres).
var shared struct {
	once sync.Once
	pg   *Postgres
	err  error
}

// SharedPostgres returns the package's server, started by the first test
// that asks; give each test its own database (NewDatabase). The package's
// TestMain removes it after the tests with StopSharedPostgres. Without
// PostgreSQL installed the test is skipped, or fails under CI=true.
func SharedPostgres(t testing.TB) *Postgres {
	t.Helper()
	shared.once.Do(func() { shared.pg, shared.err = StartPostgres() })
	if shared.err != nil {
		skipOrFail(t, shared.err)
	}
	return shared.pg
}

// StopSharedPostgres removes the package's server, if one was started.
func StopSharedPostgres() {
	shared.once.Do(func() {}) // none started: none starts any more
	if shared.pg != nil {
		if err := shared.pg.Remove(); err != nil {
			fmt.Fprintln(os.Stderr, "remove postgres:", err)
		}
	}
}
