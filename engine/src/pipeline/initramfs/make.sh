#!/bin/sh
# Makes bootlab's initramfs inside the image it boots (its kernel modules, its ostree, its libc):
#   sh make.sh KVER OUT INIT LANE...   (a LANE: DRIVER[,DRIVER...])
# INIT becomes /init (init.sh beside this file). Also in it: a shell, mount, switch_root,
# insmod, sleep, journald and ostree-prepare-root with their libraries; prepare-root.conf
# (ostree-prepare-root reads it from the initramfs, not from the deployment); the DRIVERs and
# their dependencies, in load order with their lane in /etc/bootlab-modules; a journald.conf.
# Uncompressed: under TCG copying it is cheaper than inflating it.
set -eu
kver=$1 out=$2 init=$3
shift 3
w=$(mktemp -d /tmp/bootlab-initramfs.XXXXXX)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/usr/bin" "$w/usr/sbin" "$w/usr/lib" "$w/usr/lib64" "$w/etc/systemd" \
  "$w/dev" "$w/proc" "$w/sys" "$w/run" "$w/sysroot"
ln -s usr/bin "$w/bin"
ln -s usr/sbin "$w/sbin"
ln -s usr/lib "$w/lib"
ln -s usr/lib64 "$w/lib64"

# A file at the same path in the tree (through its /lib, /lib64 symlinks), symlinks followed.
put() {
  mkdir -p "$w$(dirname "$1")"
  cp -L "$1" "$w$1"
}
# A program and the libraries it links.
program() {
  [ -x "$1" ] || { echo "make.sh: the image has no $1" >&2; exit 1; }
  put "$1"
  if ldd "$1" | grep -q 'not found'; then
    echo "make.sh: a library of $1 is missing:" >&2
    ldd "$1" | grep 'not found' >&2
    exit 1
  fi
  for lib in $(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    [ -e "$w$lib" ] || put "$lib"
  done
}
program /usr/bin/dash
ln -s dash "$w/usr/bin/sh"
program /usr/bin/mount
program /usr/bin/sleep
program /usr/sbin/switch_root
kmod=$(readlink -f /usr/sbin/insmod)
program "$kmod"
ln -s "$kmod" "$w/usr/sbin/insmod"
program /usr/lib/systemd/systemd-journald
program /usr/lib/ostree/ostree-prepare-root
# kmod opens the decompressor of .ko.xz / .ko.zst modules at run time (dlopen); the guests are
# x86_64 only.
for lib in /usr/lib/x86_64-linux-gnu/liblzma.so.5 /usr/lib/x86_64-linux-gnu/libzstd.so.1; do
  [ ! -e "$lib" ] || [ -e "$w$lib" ] || put "$lib"
done
for f in /usr/lib/ostree/prepare-root.conf /etc/ostree/prepare-root.conf \
  /etc/ostree/initramfs-root-binding.key; do
  [ ! -e "$f" ] || put "$f"
done

# The drivers in lanes, one argument each (comma-separated names): init.sh loads a lane's
# modules in order, dependencies first, and the lanes side by side. Built-in ones are skipped,
# each module is listed once; a module a lane needs from another lane is an error (that lane
# could load it too late).
: > "$w/etc/bootlab-modules"
lane=0
for arg in "$@"; do
  lane=$((lane + 1))
  for m in $(printf '%s' "$arg" | tr , ' '); do
    modprobe -S "$kver" --show-depends "$m" > "$w/deps" ||
      { echo "make.sh: kernel $kver has no driver $m" >&2; exit 1; }
    for ko in $(awk '$1 == "insmod" {print $2}' "$w/deps"); do
      dest=/usr/lib/modules/$kver/$(basename "$ko")
      other=$(awk -v d="$dest" '$2 == d {print $1}' "$w/etc/bootlab-modules")
      if [ -n "$other" ]; then
        [ "$other" = "$lane" ] && continue
        echo "make.sh: $m (lane $lane) needs $(basename "$ko"), which lane $other loads: put them in one lane" >&2
        exit 1
      fi
      mkdir -p "$w/usr/lib/modules/$kver"
      cp -L "$ko" "$w$dest"
      echo "$lane $dest" >> "$w/etc/bootlab-modules"
    done
  done
done
rm "$w/deps"

# Not Audit=yes (journald's default when it is not socket-activated): that would switch the
# kernel's auditing on for the whole boot. The real root's journald reads the kernel's messages.
printf '[Journal]\nStorage=volatile\nAudit=no\nReadKMsg=no\n' > "$w/etc/systemd/journald.conf"

cp "$init" "$w/init"
chmod 0755 "$w/init"
# The same bytes from the same image: cpio's --reproducible fixes inodes, not times.
find "$w" -exec touch -h -d @0 {} +
(cd "$w" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort |
  cpio -o -H newc -R 0:0 --reproducible --quiet) > "$out.tmp"
mv "$out.tmp" "$out"
