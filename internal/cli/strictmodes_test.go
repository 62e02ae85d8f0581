package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem.dev/tandem/internal/config"
)

// serve refuses a data directory or key files that others could read, and
// names the command that fixes it (M25).
func TestStrictModes(t *testing.T) {
	type setup func(t *testing.T, data, kek string)
	chmod := func(rel string, mode os.FileMode) setup {
		return func(t *testing.T, data, kek string) {
			p := filepath.Join(data, rel)
			switch rel {
			case "KEK":
				p = kek
			case "SIGNING":
				p = signingKeyOf(data)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows := []struct {
		name  string
		setup setup
		want  string // "" for no problem; %D is data_dir, %K the KEK file
		root  bool   // needs root (chown to another user)
	}{
		{"fresh layout", nil, "", false},
		{"data_dir 0755", chmod(".", 0o755), "data_dir %D is mode 0755, open to other users; run: chmod 700 %D", false},
		{"data_dir 0750", chmod(".", 0o750), "run: chmod 700 %D", false},
		{"keys dir 0711", chmod("keys", 0o711), "key directory %D/keys is mode 0711, open to other users; run: chmod 700 %D/keys", false},
		{"audit dir 0770", chmod("audit", 0o770), "audit directory %D/audit is mode 0770", false},
		{"vault dir 0705", chmod("vault", 0o705), "vault directory %D/vault is mode 0705", false},
		{"user CA 0640", chmod("keys/user_ca", 0o640), "user CA key %D/keys/user_ca is mode 0640, open to other users; run: chmod 600 %D/keys/user_ca", false},
		{"host CA 0644", chmod("keys/host_ca", 0o644), "host CA key %D/keys/host_ca is mode 0644", false},
		{"host key 0604", chmod("keys/host_key", 0o604), "host key %D/keys/host_key is mode 0604", false},
		{"audit signing key 0640", chmod("SIGNING", 0o640), "audit signing key (audit.signing_key) %S is mode 0640; run: chmod 600 %S", false},
		{"KEK 0644", chmod("KEK", 0o644), "key-encryption key (recording.kek_file) %K is mode 0644", false},
		{"key 0400 is fine", chmod("keys/user_ca", 0o400), "", false},
		{"public key 0644 is fine", chmod("keys/user_ca.pub", 0o644), "", false},
		{"key file is a symlink", func(t *testing.T, data, _ string) {
			p := filepath.Join(data, "keys", "host_ca")
			real := filepath.Join(filepath.Dir(data), "elsewhere")
			if err := os.Rename(p, real); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(real, p); err != nil {
				t.Fatal(err)
			}
		}, "host CA key %D/keys/host_ca is a symbolic link; a key file must be a regular file", false},
		{"KEK owned by another user", func(t *testing.T, _, kek string) {
			if err := os.Chown(kek, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "key-encryption key (recording.kek_file) %K is owned by uid 4242, not by the user running the gateway", true},
		{"data_dir owned by another user", func(t *testing.T, data, _ string) {
			if err := os.Chown(data, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}, "data_dir %D is owned by uid 4242", true},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to give a file to another user")
			}
			cfg := layout(t)
			data, kek := cfg.Gateway.DataDir, cfg.Recording.KEKFile
			if tc.setup != nil {
				tc.setup(t, data, kek)
			}
			err := strictModes(cfg)
			want := strings.NewReplacer("%D", data, "%K", kek, "%S", signingKeyOf(data)).Replace(tc.want)
			switch {
			case want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case want != "" && err == nil:
				t.Fatalf("accepted, want %q", want)
			case want != "":
				for _, part := range strings.Split(want, "; ") {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error %q does not contain %q", err, part)
					}
				}
			}
		})
	}
}

// layout creates what a first start of the gateway creates: data_dir
// with keys, audit log, vault and a KEK file beside the configuration.
func layout(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{}
	cfg.Gateway.DataDir = filepath.Join(dir, "data")
	cfg.Recording.KEKFile = filepath.Join(dir, "tandem.kek")
	cfg.Audit.Origin = "tandem/audit"
	cfg.Audit.SigningKey = signingKeyOf(cfg.Gateway.DataDir)
	for _, d := range []string{"", "keys", "audit", "vault", "vault/keys", "recordings"} {
		if err := os.MkdirAll(filepath.Join(cfg.Gateway.DataDir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"keys/host_key", "keys/user_ca", "keys/host_ca"} {
		if err := os.WriteFile(filepath.Join(cfg.Gateway.DataDir, f), []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.Gateway.DataDir, "keys/user_ca.pub"), []byte("public\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Recording.KEKFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Audit.SigningKey, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// signingKeyOf is where layout keeps the audit signing key: beside the
// configuration, outside data_dir.
func signingKeyOf(data string) string { return filepath.Join(filepath.Dir(data), "tandem-audit.key") }
