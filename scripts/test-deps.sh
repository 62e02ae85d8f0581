#!/usr/bin/env bash
# Ensures the programs the end-to-end tests drive are installed: OpenSSH
# (server and clients), rsync, tmux, Ansible, asciinema, sudo, an SMTP
# server with STARTTLS (python3-aiosmtpd, for the DPO notice test),
# promtool (Debian package prometheus, which checks the metrics and alert
# rules), rsyslog with its TLS driver and openssl (the central log tests),
# HAProxy (two gateways behind a load balancer, docs/HA.md), PostgreSQL's
# server (the state store's tests start a private one), nftables (nft -c
# checks the target role's firewall rule), systemd's systemd-analyze (the
# unit file's verify and security figures), apparmor (apparmor_parser
# checks the service's profile), headless chromium and pdftotext
# (poppler-utils: the evidence report rendered and printed to PDF), age
# and gpg (a disclosure's recipient decrypts it). Quiet and
# idempotent when everything is present. As root it installs what is
# missing with apt-get; otherwise it prints the command and fails, because
# under CI=true a missing program fails the tests anyway.
set -euo pipefail

packages=(openssh-server openssh-client rsync tmux ansible asciinema sudo python3-aiosmtpd prometheus rsyslog rsyslog-gnutls openssl haproxy postgresql nftables systemd apparmor chromium poppler-utils age gnupg)
programs=(sshd ssh scp sftp ssh-keygen rsync tmux ansible-playbook asciinema sudo promtool rsyslogd openssl haproxy nft systemd-analyze apparmor_parser chromium pdftotext age age-keygen gpg)


# have reports whether a program is installed; sshd lives in /usr/sbin,
# which is often not in a non-root PATH.
have() {
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]
}

missing=()
for p in "${programs[@]}"; do
	have "$p" || missing+=("$p")
done
# The SMTP test runs Debian's python3, which python3-aiosmtpd serves.
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=(aiosmtpd)
# rsyslog's TLS driver comes in its own package (rsyslog-gnutls).
have_gtls() {
	compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null || [ -e /usr/lib/rsyslog/lmnsd_gtls.so ]
}
have_gtls || missing+=(lmnsd_gtls)
# PostgreSQL's server lives in /usr/lib/postgresql/VERSION/bin.
have_pg() {
	compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || have postgres
}
have_pg || missing+=(postgres)
# PostgreSQL's server programs live outside PATH, in /usr/lib/postgresql/*/bin.
have_pg() {
	compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || have postgres
}
have_pg || missing+=(postgres)

install_cmd="apt-get install -y --no-install-recommends ${packages[*]}"

if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "test-deps: missing programs: ${missing[*]}" >&2
		echo "test-deps: install them as root with: apt-get update && $install_cmd" >&2
		exit 1
	fi
	echo "test-deps: installing packages for: ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $install_cmd
	still=()
	for p in "${missing[@]}"; do
		if [ "$p" = aiosmtpd ]; then
			/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || still+=("$p")
		elif [ "$p" = lmnsd_gtls ]; then
			have_gtls || still+=("$p")
		elif [ "$p" = postgres ]; then
			have_pg || still+=("$p")
		elif [ "$p" = postgres ]; then
			have_pg || still+=("$p")
		else
			have "$p" || still+=("$p")
		fi
	done
	if [ "${#still[@]}" -gt 0 ]; then
		echo "test-deps: still missing after install: ${still[*]}" >&2
		exit 1
	fi
fi

# sshd refuses to start (even for sshd -t) without its privilege
# separation directory, which containers often lack.
if [ ! -d /run/sshd ]; then
	if [ "$(id -u)" -eq 0 ]; then
		mkdir -p /run/sshd
		chmod 0755 /run/sshd
	else
		echo "test-deps: /run/sshd is missing; create it as root: mkdir -p /run/sshd" >&2
		exit 1
	fi
fi
