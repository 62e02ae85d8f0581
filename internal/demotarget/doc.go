// Package demotarget is the in-process SSH target that `tandem demo` starts,
// so that a new user can try the gateway without installing or configuring
// sshd.
//
// It behaves like an OpenSSH sshd set up for Tandem (TrustedUserCAKeys,
// no passwords, LogLevel VERBOSE): it accepts only user certificates signed
// by one CA key, valid at the (injectable) current time, whose principals
// include the requested user name, and it logs every accepted login as
//
//	Accepted certificate ID "<key id>" (serial N) for <user>
//
// like sshd does, so the demo can show who reached the target through the
// gateway. Plain keys, passwords, keyboard-interactive, port forwarding,
// agent and X11 forwarding are refused.
//
// It is a DEMO. Every command runs as the operating-system user who runs
// `tandem demo`, whatever user name the certificate names, in a working
// directory that is a convenience, not a sandbox: shell commands and SFTP
// can reach every file that user can. Never use this package outside
// `tandem demo`; real targets run sshd with the drop-in config Tandem
// generates.
//
// The package needs a Unix system (process groups, PTYs).
package demotarget
