package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/testenv"
)

// TestBulkTransfers moves a 64 MiB random file up to db1 and back down
// with every OpenSSH transfer program, through the gateway, and compares
// SHA-256 sums. The target is this machine, so "remote" paths are local
// files too.
func TestBulkTransfers(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"scp", "sftp", "rsync"} {
		testenv.RequireProgram(t, p)
	}
	e := newEnv(t)
	src := filepath.Join(e.Dir, "payload.bin")
	writeRandomFile(t, src, 64<<20)
	want := fileSHA256(t, src)
	const timeout = 3 * time.Minute

	// Each case uploads src to remote and downloads remote to local.
	cases := []struct {
		name string
		up   func(remote string) testenv.Result
		down func(remote, local string) testenv.Result
	}{
		{
			name: "scp jump",
			up:   func(r string) testenv.Result { return e.scp(t, timeout, src, "db1:"+r) },
			down: func(r, l string) testenv.Result { return e.scp(t, timeout, "db1:"+r, l) },
		},
		{
			name: "scp -O jump",
			up:   func(r string) testenv.Result { return e.scp(t, timeout, "-O", src, "db1:"+r) },
			down: func(r, l string) testenv.Result { return e.scp(t, timeout, "-O", "db1:"+r, l) },
		},
		{
			name: "scp username",
			up:   func(r string) testenv.Result { return e.scp(t, timeout, src, "gwu:"+r) },
			down: func(r, l string) testenv.Result { return e.scp(t, timeout, "gwu:"+r, l) },
		},
		{
			name: "scp -O username",
			up:   func(r string) testenv.Result { return e.scp(t, timeout, "-O", src, "gwu:"+r) },
			down: func(r, l string) testenv.Result { return e.scp(t, timeout, "-O", "gwu:"+r, l) },
		},
		{
			name: "sftp jump",
			up: func(r string) testenv.Result {
				return e.sftpBatch(t, timeout, fmt.Sprintf("put %s %s\n", src, r))
			},
			down: func(r, l string) testenv.Result {
				return e.sftpBatch(t, timeout, fmt.Sprintf("get %s %s\n", r, l))
			},
		},
		{
			name: "rsync jump",
			up: func(r string) testenv.Result {
				return e.Alice.Exec(t, testenv.RunOpts{Timeout: timeout}, "rsync", src, "db1:"+r)
			},
			down: func(r, l string) testenv.Result {
				return e.Alice.Exec(t, testenv.RunOpts{Timeout: timeout}, "rsync", "db1:"+r, l)
			},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			remote := filepath.Join(e.Dir, fmt.Sprintf("remote-%d.bin", i))
			local := filepath.Join(e.Dir, fmt.Sprintf("local-%d.bin", i))

			r := tc.up(remote)
			if r.Code != 0 {
				e.failf(t, r, "%s: upload failed", tc.name)
			}
			if got := fileSHA256(t, remote); got != want {
				e.failf(t, r, "%s: uploaded file has SHA-256 %s, want %s", tc.name, got, want)
			}
			r = tc.down(remote, local)
			if r.Code != 0 {
				e.failf(t, r, "%s: download failed", tc.name)
			}
			if got := fileSHA256(t, local); got != want {
				e.failf(t, r, "%s: downloaded file has SHA-256 %s, want %s", tc.name, got, want)
			}
			// Free the disk space early; the payload stays.
			_ = os.Remove(remote)
			_ = os.Remove(local)
		})
	}
}

func (e *env) scp(t *testing.T, timeout time.Duration, args ...string) testenv.Result {
	t.Helper()
	return e.Alice.Exec(t, testenv.RunOpts{Timeout: timeout}, "scp", append([]string{"-q"}, args...)...)
}

// sftpBatch runs `sftp -b FILE db1` with the given commands.
func (e *env) sftpBatch(t *testing.T, timeout time.Duration, commands string) testenv.Result {
	t.Helper()
	batch := filepath.Join(e.Dir, "sftp-batch")
	writeTestFile(t, batch, commands)
	return e.Alice.Exec(t, testenv.RunOpts{Timeout: timeout}, "sftp", "-b", batch, "db1")
}

// writeRandomFile writes size bytes of seeded pseudo-random data: not
// compressible, and reproducible from the test log if a run fails.
func writeRandomFile(t *testing.T, path string, size int64) {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("payload %s: %d bytes, ChaCha8 seed %d", path, size, seed)
	var key [32]byte
	for i := range 4 {
		for j := range 8 {
			key[i*8+j] = byte(seed >> (8 * j))
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatalf("create payload: %v", err)
	}
	if _, err := io.CopyN(f, rand.NewChaCha8(key), size); err != nil {
		_ = f.Close()
		t.Fatalf("write payload: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close payload: %v", err)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("hash %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hasAny reports whether s contains any of the substrings (case-insensitive).
func hasAny(s string, subs ...string) bool {
	ls := strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(ls, strings.ToLower(sub)) {
			return true
		}
	}
	return false
}
