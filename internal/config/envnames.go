package config

import (
	"path"
	"strings"
)

// dangerousEnv are environment variables a client must never set on a
// target: each makes a shell, the dynamic loader, libc or an interpreter
// run code or read files the client names, before or around the command
// the gateway records (M4, M25). A `ssh host uptime` with BASH_ENV or
// LD_PRELOAD runs whatever it likes while the audit log shows "uptime".
// The list follows glibc's UNSECURE_ENVVARS (what it drops for setuid
// programs: GCONV_PATH … TZDIR, TMPDIR among them) and adds the shells'
// and interpreters' start-up hooks, commands run by pagers and editors,
// and the names sshd itself sets, which a client could otherwise forge.
// gateway.env_allow entries are checked against it with path.Match, so a
// glob that matches any of these ("*", "L*", "*PATH") is refused too.
var dangerousEnv = []string{
	// shells
	"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "CDPATH", "GLOBIGNORE",
	"PATH", "HOME", "SHELL", "HISTFILE",
	// the dynamic loader and libc (glibc's UNSECURE_ENVVARS)
	"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_DEBUG_OUTPUT", "LD_PROFILE", "LD_ORIGIN_PATH",
	"GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
	"MALLOC_TRACE", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR",
	// interpreters
	"PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONINSPECT", "PYTHONWARNINGS",
	"PERL5LIB", "PERL5OPT", "PERLLIB", "PERL5DB", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS", "NODE_PATH",
	"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
	// programs that run a command named in a variable
	"PAGER", "MANPAGER", "GIT_PAGER", "EDITOR", "VISUAL", "LESSOPEN", "LESSCLOSE",
	"GIT_SSH_COMMAND", "GIT_SSH", "GIT_EXEC_PATH", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_GLOBAL",
	// names sshd sets for the session
	"SSH_ORIGINAL_COMMAND", "SSH_CONNECTION", "SSH_CLIENT", "SSH_AUTH_SOCK", "SSH_TTY", "USER", "LOGNAME", "MAIL",
	// exported bash functions (Shellshock's carrier)
	"BASH_FUNC_x%%",
}

// dangerousEnvPrefixes are families of dangerous names: an entry whose
// literal start (before any glob character) is in one of them, or that
// matches a made-up member of one, is refused even if it matches no name
// above, e.g. "LD_BIND_NOW", "PYTHONX*" or "?D_*".
var dangerousEnvPrefixes = []string{"LD_", "DYLD_", "GCONV", "MALLOC_", "GLIBC_", "PYTHON", "PERL", "RUBY", "NODE_", "GIT_", "SSH_", "BASH_FUNC_"}

// DangerousEnv reports whether env_allow entry glob lets a client set an
// injection-prone variable, and names one such variable.
func DangerousEnv(glob string) (string, bool) {
	for _, n := range dangerousEnv {
		if ok, _ := path.Match(glob, n); ok {
			return n, true
		}
	}
	literal := glob
	if i := strings.IndexAny(glob, `*?[\`); i >= 0 {
		literal = glob[:i]
	}
	for _, p := range dangerousEnvPrefixes {
		if strings.HasPrefix(literal, p) {
			return glob, true
		}
		if ok, _ := path.Match(glob, p+"X"); ok {
			return p + "X", true
		}
	}
	return "", false
}
