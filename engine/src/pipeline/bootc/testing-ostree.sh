# mmdebstrap customize hook: put libostree >= 2025.3 (and composefs) from Debian testing into a
# trixie root, each package at the exact version testing has today, and nothing else from testing.
# `apt -t testing` / `-t unstable` would drag in a newer libc6 and glib (the binary then warns on
# trixie), so testing is pinned low and only the named packages are installed at pinned versions.
# Usage: sh testing-ostree.sh ROOT MIRROR PACKAGE...
set -eu
root="$1"; mirror="$2"; shift 2
# check-valid-until=no: a mirror may serve a Release file whose Valid-Until has passed (seen on
# this machine kind); the archive signature is still checked.
echo "deb [check-valid-until=no] $mirror testing main" > "$root/etc/apt/sources.list.d/bootlab-testing.list"
printf 'Package: *\nPin: release a=testing\nPin-Priority: 100\n' \
  > "$root/etc/apt/preferences.d/bootlab-testing"
chroot "$root" apt-get update -qq
libc_before=$(chroot "$root" dpkg-query -W -f '${Version}' libc6)
specs=""
for p in "$@"; do
  v=$(chroot "$root" apt-cache madison "$p" | awk -F'|' '$3 ~ / testing\// { gsub(/ /, "", $2); print $2; exit }')
  if [ -z "$v" ]; then
    echo "bootlab: $p is not in Debian testing at $mirror" >&2
    exit 3
  fi
  echo "bootlab: $p $v (testing)"
  specs="$specs $p=$v"
done
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y --no-install-recommends $specs
libc_after=$(chroot "$root" dpkg-query -W -f '${Version}' libc6)
if [ "$libc_before" != "$libc_after" ]; then
  echo "bootlab: installing the testing packages replaced libc6 $libc_before with $libc_after" >&2
  exit 4
fi
have=$(chroot "$root" dpkg-query -W -f '${Version}' libostree-1-1)
echo "bootlab: libostree-1-1 $have from testing; libc6 stays $libc_after"
