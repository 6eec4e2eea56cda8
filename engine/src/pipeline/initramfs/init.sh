#!/bin/sh
# /init of bootlab's initramfs: no systemd, no udev (under TCG they took ~6 s of every boot).
# It loads the few drivers the root needs, mounts the root as the kernel command line says,
# lets ostree-prepare-root set up the deployment (composefs, /etc, /sysroot), mounts the
# deployment's /boot (its fstab line marked x-initrd.mount) and switches to it.
# A journald runs meanwhile: ostree-prepare-root writes its composefs and verity lines to the
# journal (`journalctl -b` in the guest shows them); its other lines go to the console.
export PATH=/usr/bin:/usr/sbin
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
# The real root's systemd keeps these as they are: the options are those systemd would use.
mount -t tmpfs -o nosuid,nodev,mode=0755,size=20%,nr_inodes=800k tmpfs /run
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
exec </dev/console >/dev/console 2>&1
# Where a failed mount's message waits to be shown.
MOUNT_ERR=/run/mount.err

# The boot-phase marks bootlab reads on the console (engine/src/vm/boot_phase.rs).
mark() {
  read -r up _ < /proc/uptime
  echo "bootlab-phase $1 $up"
}
fail() {
  echo "bootlab initramfs: $*"
  echo "bootlab initramfs: a shell on the console; the boot stops here."
  # The console, whatever the caller had redirected (a loop reading a file).
  exec sh </dev/console >/dev/console 2>&1
}
# Mounts the lines of fstab $1 marked x-initrd.mount under the root $2 (bootlab's marks /boot
# and the /var bind): mounted by systemd, they waited ~2 s of every boot under TCG for udev to
# announce their disk. A line for / is ostree-prepare-root's. A bind's source is a path of the
# real root, so under $2 here. The file is read on fd 3: a failure's shell keeps the console.
mount_initrd_lines() {
  while read -r src dir type opts _ <&3 || [ -n "$src" ]; do
    case "$src" in '' | '#'*) src=''; continue ;; esac
    case ",$opts," in *,x-initrd.mount,*) ;; *) src=''; continue ;; esac
    case ",$opts," in *,bind,* | *,rbind,*) case "$src" in /*) src=$2$src ;; esac ;; esac
    if [ "$dir" != / ]; then
      mount -t "$type" -o "$opts" "$src" "$2$dir" 2>"$MOUNT_ERR" || {
        read -r why < "$MOUNT_ERR"
        fail "could not mount $dir ($src, the deployment's /etc/fstab): $why"
      }
    fi
    src=''
  done 3< "$1"
}
# Loads the drivers file $1 lists (lines `LANE PATH`, make.sh): a lane's in order, dependencies
# first, and the lanes side by side, one process each. Under TCG loading a module is mostly
# unpacking and checking it: ext4's chain alone took ~1 s of one vCPU while the other idled.
load_drivers() {
  lanes=' ' loaders=''
  while read -r lane _ <&3; do
    case "$lanes" in *" $lane "*) continue ;; esac
    lanes="$lanes$lane "
    load_lane "$1" "$lane" &
    loaders="$loaders $!"
  done 3< "$1"
  # Not a bare `wait`: journald runs on.
  wait $loaders
}
load_lane() {
  while read -r lane ko <&3; do
    [ "$lane" = "$2" ] || continue
    # A driver that does not fit this CPU (crc32c-intel) is not fatal: mounting the root says.
    insmod "$ko" || echo "bootlab initramfs: could not load $ko"
  done 3< "$1"
}
mark initramfs

# The journal's files are named by the machine ID; the real root has its own.
IFS=- read -r a b c d e < /proc/sys/kernel/random/boot_id
echo "$a$b$c$d$e" > /etc/machine-id
/usr/lib/systemd/systemd-journald >/dev/null 2>&1 &
journald=$!

load_drivers /etc/bootlab-modules

root='' flags='' fstype='' mode=ro
read -r cmdline < /proc/cmdline
# Split on blanks only (no quoted arguments), never expanded as file names.
set -f
for arg in $cmdline; do
  case "$arg" in
    root=*) root=${arg#root=} ;;
    rootflags=*) flags=,${arg#rootflags=} ;;
    rootfstype=*) fstype=${arg#rootfstype=} ;;
    rw) mode=rw ;;
    ro) mode=ro ;;
  esac
done
set +f
[ -n "$root" ] || fail "no root= on the kernel command line"
# The disk shows up while virtio_blk probes; mount resolves LABEL=/UUID= by probing.
tries=0
until mount ${fstype:+-t "$fstype"} -o "$mode$flags" "$root" /sysroot 2>"$MOUNT_ERR"; do
  tries=$((tries + 1))
  if [ "$tries" -ge 200 ]; then
    read -r why < "$MOUNT_ERR"
    fail "could not mount root=$root: $why"
  fi
  sleep 0.05
done

# ostree-prepare-root logs through the journal socket: wait for journald to listen.
tries=0
until [ -S /run/systemd/journal/socket ]; do
  tries=$((tries + 1))
  [ "$tries" -lt 200 ] || break
  sleep 0.02
done
/usr/lib/ostree/ostree-prepare-root /sysroot || fail "ostree-prepare-root failed"

# The deployment's /boot (its fstab line marked x-initrd.mount), before systemd starts.
if [ -e /sysroot/etc/fstab ]; then
  mount_initrd_lines /sysroot/etc/fstab /sysroot
fi

kill -TERM "$journald"
wait "$journald"
mark systemd
exec switch_root /sysroot /sbin/init
