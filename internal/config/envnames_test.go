package config

import "testing"

func TestDangerousEnv(t *testing.T) {
	for _, g := range []string{"LANG", "LC_*", "TZ", "LANGUAGE", "COLORTERM", "NO_COLOR", "LC_ALL", "TERM_PROGRAM"} {
		if n, bad := DangerousEnv(g); bad {
			t.Errorf("%q refused (matches %s)", g, n)
		}
	}
	for _, g := range []string{"*", "?*", "L*", "LD_*", "LD_BIND_NOW", "?D_*", "[L]D_PRELOAD", "BASH_ENV", "ENV", "PATH", "*PATH",
		"PYTHON*", "PYTHONX", "PERL5*", "RUBYOPT", "NODE_OPTIONS", "IFS", "SHELLOPTS", "PS4", "GCONV_PATH", "HOSTALIASES",
		"LOCALDOMAIN", "RES_OPTIONS", "TMPDIR", "GLIBC_TUNABLES", "BASH_FUNC_*", "GIT_*", "SSH_*", "LESSOPEN", "HOME"} {
		if _, bad := DangerousEnv(g); !bad {
			t.Errorf("%q accepted", g)
		}
	}
}
