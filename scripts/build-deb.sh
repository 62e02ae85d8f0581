#!/usr/bin/env bash
# Builds the Debian package of Tandem from a built binary with dpkg-deb:
# the binary, the hardened systemd unit, a default configuration that
# lets nobody in (a conffile), the docs, the man pages generated from the
# binary's own command tree, and the SBOM. Every file's time is
# SOURCE_DATE_EPOCH (default: the commit's time), so the same binary
# gives the same package. DEB_COMPRESSION (default xz) is dpkg-deb's -Z.
#
#   scripts/build-deb.sh bin/tandem 1.2.0 dist     # make deb does this
set -euo pipefail
bin=${1:?usage: scripts/build-deb.sh BINARY VERSION OUTDIR}
version=${2:?usage: scripts/build-deb.sh BINARY VERSION OUTDIR}
out=${3:?usage: scripts/build-deb.sh BINARY VERSION OUTDIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
arch=${DEB_ARCH:-$(${GO:-go} env GOARCH)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}

# A Debian version starts with a digit and has no hyphen without a
# revision: v1.2.0 → 1.2.0, 7b9e48f-dirty → 0.0~git7b9e48f+dirty.
debversion=${version#v}
if ! [[ $debversion =~ ^[0-9]+\.[0-9] ]]; then
	debversion="0.0~git$debversion"
fi
debversion=${debversion//-/+}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$work/pkg
doc=$pkg/usr/share/doc/tandem
install -D -m 0755 "$bin" "$pkg/usr/bin/tandem"
install -D -m 0644 "$repo/deploy/systemd/tandem.service" "$pkg/lib/systemd/system/tandem.service"
install -D -m 0640 "$repo/deploy/debian/tandem.yaml" "$pkg/etc/tandem/tandem.yaml"
install -D -m 0644 "$repo/deploy/debian/copyright" "$doc/copyright"
install -D -m 0644 "$repo/deploy/systemd/bind-privileged.conf" "$doc/examples/bind-privileged.conf"
install -D -m 0644 "$repo/deploy/apparmor/tandem" "$doc/examples/apparmor/tandem"
install -D -m 0644 "$repo/deploy/apparmor/tandem-apparmor.conf" "$doc/examples/apparmor/tandem-apparmor.conf"
for f in README.md SECURITY.md docs/DEPLOY.md docs/CONFIG.md docs/AUDIT.md docs/CENTRAL-LOG.md docs/MONITORING.md; do
	install -D -m 0644 "$repo/$f" "$doc/$(basename "$f")"
done
"$repo/scripts/sbom.sh" "$bin" "$version" > "$doc/sbom.cdx.json"
chmod 0644 "$doc/sbom.cdx.json"
mkdir -p "$pkg/usr/share/man/man1"
"$bin" man-pages --dir "$work/man"
for page in "$work"/man/*.1; do
	gzip -9 -n -c "$page" > "$pkg/usr/share/man/man1/$(basename "$page").gz"
	chmod 0644 "$pkg/usr/share/man/man1/$(basename "$page").gz"
done

mkdir -p "$pkg/DEBIAN"
install -m 0755 "$repo/deploy/debian/postinst" "$pkg/DEBIAN/postinst"
echo /etc/tandem/tandem.yaml > "$pkg/DEBIAN/conffiles"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: tandem
Version: $debversion
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-Tandem maintainers <maintainers@tandem.dev>}
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: adduser
Recommends: openssh-client
Section: admin
Priority: optional
Homepage: https://tandem.dev
Description: privileged-access SSH gateway with four-eyes sessions
 Tandem is the one way administrators reach servers: plain OpenSSH
 clients connect to it, it decides by policy who may reach which host and
 login, records what happens in encrypted recordings and a tamper-evident
 audit log, and reaches the target with a short-lived certificate.
CONTROL
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/tandem_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
