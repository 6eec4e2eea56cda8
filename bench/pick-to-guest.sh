#!/usr/bin/env bash
# Baseline for the "bootlab vs a plain shell script" benchmark row: from a recipe folder to a
# guest agent answering guest-ping, with the same host tools bootlab runs and no cache of our own
# (only podman's layer cache). Offline recipes: the trixie base (composefs required, deployed by
# the image's own ostree, as bootlab does) or an older base whose ostree matches the host's.
# Usage: bash bench/pick-to-guest.sh RECIPE_DIR WORKDIR [VERSION]   (root; WORKDIR new or empty)
set -euo pipefail

RECIPE=$(realpath "$1"); W=$2; VERSION=${3:-v1}; HERE=$(dirname "$(realpath "$0")")
NAME=$(basename "$RECIPE"); BRANCH="bootlab/$NAME"; OS=debian
ROOT_LABEL=bootlab-root; BOOT_LABEL=bootlab-boot
KARGS=("root=LABEL=$ROOT_LABEL" rw console=ttyS0,115200 quiet systemd.show_status=auto fsck.mode=skip mitigations=off 8250.nr_uarts=1
  module_blacklist=floppy,pcspkr,parport_pc,ppdev,psmouse,serio_raw,kvm_amd,kvm_intel,kvm,ata_piix,ata_generic,bochs,i2c_piix4
  lsm=lockdown,capability,landlock,yama,apparmor,tomoyo,ipe,ima,evm)
# The ulimits bootlab pins (inherited hard limits, capped): podman cannot raise them here.
NOFILE=$(ulimit -Hn); NPROC=$(ulimit -Hu)
[ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 20000 ] && NOFILE=20000
[ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ] && NPROC=32768
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")
[ -z "$(ls -A "$W" 2>/dev/null)" ] || { echo "WORKDIR $W is not empty" >&2; exit 2; }
mkdir -p "$W"; W=$(realpath "$W"); MNT=$W/mnt; TREE=$W/tree
EXPORT_CTR=pick-bench-export-$$; INITRAMFS_CTR=pick-bench-initramfs-$$
BOOT_LOOP=; ROOT_LOOP=; QPID=

# Undo whatever this run set up, in reverse order, whether it succeeded or failed.
cleanup() {
  [ -n "$QPID" ] && kill "$QPID" 2>/dev/null && wait "$QPID" 2>/dev/null || true
  mountpoint -q "$MNT/boot" 2>/dev/null && umount "$MNT/boot"
  mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
  for d in $BOOT_LOOP $ROOT_LOOP; do losetup -d "$d" 2>/dev/null || true; done
  podman rm -f --ignore "$EXPORT_CTR" "$INITRAMFS_CTR" >/dev/null 2>&1 || true
}
trap cleanup EXIT; trap "exit 130" INT TERM

START=$EPOCHREALTIME; T0=$START
step() { local now=$EPOCHREALTIME; awk -v a="$T0" -v b="$now" -v s="$1" 'BEGIN{printf "step %s %.1fs\n", s, b-a}'; T0=$now; }

# base: the recipe builds FROM an image that must already be in podman's storage (no registry).
BASE=$(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$RECIPE/Containerfile" | head -1)
podman image exists "$BASE" || { echo "base image $BASE missing" >&2; exit 1; }
step base

# build: podman build, untagged (bootlab tags only after the commit exists); layer cache allowed.
podman build --network=host --layers --force-rm "${ULIMITS[@]}" --build-arg "BOOTLAB_VERSION=$VERSION" \
  --iidfile "$W/iid" -f "$RECIPE/Containerfile" "$RECIPE" >"$W/build.log" 2>&1 || { tail "$W/build.log"; exit 1; }
IMAGE=$(cat "$W/iid")
step build

# export: the image's rootfs through a temp container, unpacked with owners, modes and xattrs.
podman create --name "$EXPORT_CTR" "${ULIMITS[@]}" "$IMAGE" /bin/true >/dev/null
podman export -o "$W/rootfs.tar" "$EXPORT_CTR"; podman rm "$EXPORT_CTR" >/dev/null
mkdir "$TREE"
tar --numeric-owner --same-owner --same-permissions --xattrs --xattrs-include='*' -xf "$W/rootfs.tar" -C "$TREE"
rm "$W/rootfs.tar"
step export

# initramfs: the base's generic one is 40 MB gzip with systemd and udev; bootlab's builder
# (engine/src/pipeline/initramfs/make.sh: a shell /init, the drivers, ostree-prepare-root) runs
# in the image itself (its kernel, its ostree). Every run.
# The kernel is in /boot (older bases) or already in usr/lib/modules/$KVER (the trixie base).
shopt -s nullglob
KERNELS=("$TREE"/boot/vmlinuz-*); IN_PLACE=
[ ${#KERNELS[@]} -eq 0 ] && { KERNELS=("$TREE"/usr/lib/modules/*/vmlinuz); IN_PLACE=1; }
shopt -u nullglob
[ ${#KERNELS[@]} -eq 1 ] || { echo "need exactly one kernel" >&2; exit 1; }
if [ -n "$IN_PLACE" ]; then KVER=$(basename "$(dirname "${KERNELS[0]}")"); else KVER=${KERNELS[0]##*/vmlinuz-}; fi
# Two lanes of drivers the initramfs loads side by side (ext4's, the virtio disk's).
COMPOSEFS=; DRIVERS="crc32c_generic,ext4 virtio_pci,virtio_blk,autofs4,ip_tables"
if grep -qsE '^enabled *= *(true|yes|1|signed|verity)' "$TREE/usr/lib/ostree/prepare-root.conf"; then
  COMPOSEFS=1; DRIVERS="crc32c_generic,ext4,erofs virtio_pci,virtio_blk,autofs4,ip_tables,loop,overlay"   # erofs image over overlay
fi
mkdir "$W/initramfs"
cp "$HERE/../engine/src/pipeline/initramfs/make.sh" "$HERE/../engine/src/pipeline/initramfs/init.sh" "$W/initramfs/"
# shellcheck disable=SC2086 # one word per lane
podman run --rm --network=none --name "$INITRAMFS_CTR" "${ULIMITS[@]}" -v "$W/initramfs:/out" "$IMAGE" \
  sh /out/make.sh "$KVER" /out/initramfs.img /out/init.sh $DRIVERS
mkdir -p "$TREE/boot"; install -m 0644 "$W/initramfs/initramfs.img" "$TREE/boot/initrd.img-$KVER"; rm -r "$W/initramfs"
step initramfs

# convert: the container rootfs becomes the tree `ostree admin deploy` expects (see layout.rs).
cd "$TREE"
M=usr/lib/modules/$KVER                          # kernel + initramfs where ostree looks for them
[ -n "$IN_PLACE" ] || mv "boot/vmlinuz-$KVER" "$M/vmlinuz"
mv "boot/initrd.img-$KVER" "$M/initramfs.img"; chmod 0644 "$M/vmlinuz" "$M/initramfs.img"
rm -rf vmlinuz* initrd.img* boot dev proc sys run tmp; mkdir -m 0755 boot dev proc sys run; mkdir -m 1777 tmp
for d in var/lib/apt/lists var/cache/apt var/log/journal; do [ -e $d ] && rm -rf $d && mkdir -m 0755 $d; done
[ -e var/tmp ] && rm -rf var/tmp && mkdir -m 1777 var/tmp
[ -d var/lib/apt/lists ] && mkdir -p var/lib/apt/lists/partial
for f in hosts resolv.conf hostname; do [ -f etc/$f ] && [ ! -L etc/$f ] && [ ! -s etc/$f ] && rm etc/$f; done  # podman's
# No line for / on a composefs root: systemd-remount-fs cannot remount it. /boot and the /var
# bind: mounted by the initramfs (x-initrd.mount), so systemd does not wait for udev's disk.
VARLINE="/sysroot/ostree/deploy/$OS/var /var none bind,x-initrd.mount 0 0"
if [ -n "$COMPOSEFS" ]; then printf 'LABEL=%s /boot ext4 defaults,noauto,x-initrd.mount 0 0\n%s\n' $BOOT_LABEL "$VARLINE" >etc/fstab
else printf 'LABEL=%s / ext4 defaults 1 1\nLABEL=%s /boot ext4 defaults,noauto,x-initrd.mount 0 0\n%s\n' $ROOT_LABEL $BOOT_LABEL "$VARLINE" >etc/fstab; fi
: >etc/machine-id; chmod 0444 etc/machine-id     # each VM makes its own machine-id on first boot
mkdir -p etc/systemd/system                      # housekeeping that costs seconds under TCG
for u in e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  fstrim.timer systemd-pstore.service modprobe@drm.service dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  dracut-shutdown.service kmod-static-nodes.service systemd-tmpfiles-setup-dev-early.service \
  systemd-udev-load-credentials.service modprobe@configfs.service sys-kernel-config.mount modprobe@fuse.service \
  sys-fs-fuse-connections.mount dev-mqueue.mount run-lock.mount systemd-random-seed.service; do
  ln -sfn /dev/null etc/systemd/system/$u; done
mkdir -p etc/systemd/system-generators           # generators for what the guest never has
for g in systemd-gpt-auto-generator systemd-hibernate-resume-generator systemd-ssh-generator \
  systemd-system-update-generator systemd-tpm2-generator; do
  ln -sfn /dev/null etc/systemd/system-generators/$g; done
mkdir -p etc/systemd/system/systemd-journal-flush.service.d   # no flush without /var/log/journal
printf '[Unit]\nConditionPathIsDirectory=/var/log/journal\n' \
  >etc/systemd/system/systemd-journal-flush.service.d/bootlab-volatile.conf
mkdir -p etc/systemd/system/systemd-udev-trigger.service.d   # coldplug: the devices a guest uses
printf '[Service]\nExecStart=\nExecStart=-udevadm trigger --type=devices --action=add --subsystem-match=tty --sysname-match=ttyS* --sysname-match=tty1 --sysname-match=console --sysname-match=ptmx --sysname-match=tty\nExecStart=-udevadm trigger --type=devices --action=add --subsystem-nomatch=tty --subsystem-nomatch=vc --prioritized-subsystem=virtio-ports,block,tpmrm,net,input\n' \
  >etc/systemd/system/systemd-udev-trigger.service.d/bootlab-coldplug.conf
# The agent opens its port by its sysfs name, not waiting for udev's device of it.
printf '[Unit]\nDescription=QEMU Guest Agent\nConditionPathExistsGlob=/sys/class/virtio-ports/vport*\n[Service]\nExecStart=/bin/sh -c "for p in /sys/class/virtio-ports/*; do read -r n < $$p/name; [ x$$n = xorg.qemu.guest_agent.0 ] && exec /usr/sbin/qemu-ga --method=virtio-serial --path=/dev/$${p##*/}; done; exit 1"\nRestart=always\nRestartSec=1\n' \
  >etc/systemd/system/qemu-guest-agent.service
mkdir -p etc/systemd/system/multi-user.target.wants
ln -sfn ../qemu-guest-agent.service etc/systemd/system/multi-user.target.wants/qemu-guest-agent.service
# The 9p file system loaded beside the boot, for the update share's mount.
printf '[Unit]\nDescription=Load 9p\nDefaultDependencies=no\nConditionVirtualization=vm\n[Service]\nType=oneshot\nExecStart=-modprobe -a 9p 9pnet_virtio\n' \
  >etc/systemd/system/bootlab-share-modules.service
mkdir -p etc/systemd/system/sysinit.target.wants
ln -sfn ../bootlab-share-modules.service etc/systemd/system/sysinit.target.wants/bootlab-share-modules.service
mkdir -p etc/modprobe.d                          # drivers for PC parts no lab uses: not loaded by udev
printf 'blacklist %s\n' floppy pcspkr parport_pc ppdev psmouse serio_raw ata_piix ata_generic bochs i2c_piix4 \
  qemu_fw_cfg kvm_amd kvm_intel aesni_intel ghash_clmulni_intel sha1_ssse3 sha256_ssse3 sha512_ssse3 crc32_pclmul \
  crct10dif_pclmul >etc/modprobe.d/bootlab-unused.conf
mv etc usr/etc                                   # ostree makes (and 3-way merges) /etc from /usr/etc
SEED=usr/share/bootlab/var-seed                  # /var is not deployed: keep it as a seed
mkdir -p usr/share/bootlab; mv var $SEED; mkdir -m 0755 var
printf 'TIMESTAMP_NSEC=0\n' >$SEED/.updated        # the first boot's catalog update is the image's
if [ -d $SEED/lib/dpkg/info ]; then               # dpkg's ~900 info files: one tar in the seed
  (cd $SEED/lib/dpkg/info && ls -A | LC_ALL=C sort | tar --numeric-owner --mtime=@0 -cf ../info.tar -T -)
  rm -rf $SEED/lib/dpkg/info; fi
for l in home:var/home:home root:var/roothome:roothome opt:var/opt:opt srv:var/srv:srv mnt:var/mnt:mnt \
         usr/local:../var/usrlocal:usrlocal; do
  IFS=: read -r p target under <<<"$l"
  if [ -d "$p" ] && [ ! -L "$p" ]; then rm -rf "${SEED:?}/$under"; mv "$p" "$SEED/$under"
  else rm -rf "$p"; [ -e "$SEED/$under" ] || mkdir -p "$SEED/$under"; fi
  ln -s "$target" "$p"
done
rm -rf media ostree sysroot; ln -s run/media media; ln -s sysroot/ostree ostree; mkdir sysroot
printf 'd /var/%s 0755 root root -\n' home opt srv mnt usrlocal usrlocal/bin >usr/lib/tmpfiles.d/bootlab-ostree.conf
printf 'd /var/roothome 0700 root root -\nd /var/tmp 1777 root root -\nd /run/media 0755 root root -\n' \
  >>usr/lib/tmpfiles.d/bootlab-ostree.conf
[ -s "$M/modules.devname" ] || { echo "no $M/modules.devname" >&2; exit 1; }
awk '/^#/ || NF == 0 { next } { n = $2; if (n ~ /\//) { d = n; sub(/\/[^\/]*$/, "", d); print "d /dev/" d " 0755 - - -" }
  print substr($3, 1, 1) "! /dev/" n " 0600 - - - " substr($3, 2) }' "$M/modules.devname" \
  >usr/lib/tmpfiles.d/static-nodes.conf          # the static device nodes (kmod-static-nodes masked)
cd - >/dev/null
step convert

# commit: into this run's own bare repo (--consume: files move in instead of being copied).
ostree --repo="$W/repo" init --mode=bare
COMMIT=$(ostree --repo="$W/repo" commit --consume --branch="$BRANCH" --tree=dir="$TREE" \
  --subject="$NAME $VERSION" --add-metadata-string=version="$VERSION")
rm -rf "$TREE"
step commit

# disk: 6 GiB sparse raw, MBR p1 512 MiB /boot (ext4 extlinux can read) + p2 root, syslinux MBR.
DISK=$W/disk.raw
truncate -s 6G "$DISK"
printf 'label: dos\nunit: sectors\n\nstart=2048, size=1048576, type=83, bootable\nstart=1050624, size=11532288, type=83\n' \
  | sfdisk --no-reread --no-tell-kernel --wipe=always "$DISK" >/dev/null
dd if=/usr/lib/EXTLINUX/mbr.bin of="$DISK" bs=440 count=1 conv=notrunc status=none
BOOT_LOOP=$(losetup --find --show --offset=$((1 << 20)) --sizelimit=$((512 << 20)) "$DISK")
ROOT_LOOP=$(losetup --find --show --offset=$((513 << 20)) --sizelimit=$(((6144 - 513) << 20)) "$DISK")
mkfs.ext4 -q -F -L $BOOT_LABEL -O ^64bit,^metadata_csum "$BOOT_LOOP"
mkfs.ext4 -q -F -L $ROOT_LABEL "$ROOT_LOOP"
mkdir "$MNT"; mount "$ROOT_LOOP" "$MNT"
ostree admin init-fs "$MNT"                      # an OSTree sysroot with stateroot "debian"
mount "$BOOT_LOOP" "$MNT/boot"
ostree admin os-init --sysroot="$MNT" $OS >/dev/null
ostree --repo="$MNT/ostree/repo" config set sysroot.bootloader syslinux
mkdir "$MNT/boot/loader.0" "$MNT/boot/syslinux"  # the syslinux.cfg ostree rewrites on deploy
ln -s loader.0 "$MNT/boot/loader"; ln -s ../loader/syslinux.cfg "$MNT/boot/syslinux/syslinux.cfg"
printf 'SERIAL 0 115200\nPROMPT 0\nTIMEOUT 1\n' >"$MNT/boot/loader.0/syslinux.cfg"
ostree --repo="$MNT/ostree/repo" remote add --no-gpg-verify bootlab file:///run/bootlab/updates/repo "$BRANCH"
ostree --repo="$MNT/ostree/repo" pull-local "$W/repo" "$COMMIT" >/dev/null
ostree --repo="$MNT/ostree/repo" refs --create="bootlab:$BRANCH" "$COMMIT"
if [ -n "$COMPOSEFS" ]; then  # only a composefs-aware ostree writes the .ostree.cfs prepare-root needs
  podman run --rm --network=none "${ULIMITS[@]}" --privileged --security-opt label=disable -v "$MNT:/out" "$IMAGE" \
    ostree admin deploy --sysroot=/out --os=$OS "${KARGS[@]/#/--karg=}" "bootlab:$BRANCH" >/dev/null
  [ -f "$MNT/ostree/deploy/$OS/deploy/$COMMIT.0/.ostree.cfs" ] || { echo "the image's ostree wrote no .ostree.cfs" >&2; exit 1; }
else
  ostree admin deploy --sysroot="$MNT" --os=$OS "${KARGS[@]/#/--karg=}" "bootlab:$BRANCH" >/dev/null
fi
cp -a "$MNT/ostree/deploy/$OS/deploy/$COMMIT.0/$SEED/." "$MNT/ostree/deploy/$OS/var/"  # 2022.7 leaves /var empty
V=$MNT/ostree/deploy/$OS/var/lib/dpkg
if [ -f $V/info.tar ]; then mkdir -p $V/info && tar --numeric-owner -xpf $V/info.tar -C $V/info && rm $V/info.tar; fi
printf 'TIMESTAMP_NSEC=0\n' >"$MNT/ostree/deploy/$OS/deploy/$COMMIT.0/etc/.updated"  # ostree removed it: ldconfig's is the image's
extlinux --install "$MNT/boot/syslinux" 2>/dev/null
grep -q /ostree/ "$MNT/boot/syslinux/syslinux.cfg" || { echo "ostree wrote no boot entry" >&2; exit 1; }
sync -f "$MNT"; umount "$MNT/boot"; umount "$MNT"
losetup -d "$BOOT_LOOP"; BOOT_LOOP=; losetup -d "$ROOT_LOOP"; ROOT_LOOP=
step disk

# overlay: like bootlab, the VM writes to a qcow2 overlay, never to the raw disk.
qemu-img create -q -f qcow2 -F raw -b "$DISK" "$W/vm.qcow2"
step overlay

# boot: bootlab's QEMU line under TCG (no default devices, virtio disk, agent channel, NIC without
# option ROM, the 9p share device), then guest-ping on the agent socket until it answers.
mkdir -m 0700 "$W/run" "$W/share"
qemu-system-x86_64 -name pick-bench -machine pc -nodefaults -accel tcg,thread=multi -cpu max \
  -smp 2 -m 2048 -display none \
  -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$W/vm.qcow2" -device virtio-blk-pci,drive=disk0 \
  -serial "file:$W/console.log" -qmp "unix:$W/run/qmp.sock,server=on,wait=off" \
  -device virtio-serial-pci -chardev "socket,id=qga0,path=$W/run/qga.sock,server=on,wait=off" \
  -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
  -netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile= \
  -virtfs "local,path=$W/share,mount_tag=bootlab-updates,security_model=none,readonly=on" 2>"$W/qemu.log" &
QPID=$!
# One connection for the whole wait: QEMU aborted once (1 run in 4) under a guest-ping on a new
# connection every half second while the guest was still booting. A reply to any ping means the
# agent is up.
python3 - "$W/run/qga.sock" "$QPID" <<'PY' || { echo "no guest agent (QEMU exited or 300 s passed); see $W/console.log" >&2; exit 1; }
import os, socket, sys, time
path, qpid, deadline = sys.argv[1], int(sys.argv[2]), time.time() + 300
while not os.path.exists(path):
    time.sleep(0.1)
s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(1)
buf = b""
while time.time() < deadline:
    os.kill(qpid, 0)  # raises when QEMU is gone
    try:
        s.sendall(b'{"execute":"guest-ping"}\n')
        buf += s.recv(4096)
    except socket.timeout:
        continue
    if b'"return": {}' in buf or b'"return":{}' in buf:
        sys.exit(0)
sys.exit(1)
PY
step boot
awk -v a="$START" -v b="$EPOCHREALTIME" 'BEGIN{printf "TOTAL %.1f\n", b-a}'
# The trap powers QEMU off (SIGTERM) and leaves WORKDIR's repo, disk and overlay for inspection.
