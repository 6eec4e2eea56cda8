# mmdebstrap customize hook for the trixie guest base of bootc images (and of ostree on trixie).
# Usage: sh guest-base.sh ROOT
# - composefs on: ostree-prepare-root mounts the deployment from its .ostree.cfs.
# - the initramfs where bootc/ostree expect it, with the ostree dracut module, generic (it boots
#   in QEMU, not on this host), the kernel beside it; /boot left empty for the bootloader.
# - /root /home /opt /srv /mnt /usr/local live in /var (as in the community Debian/Arch bootc
#   images): an image's / is read-only, these are machine state; tmpfiles.d makes them at boot.
# - a hostname, root's known password "bootlab" (labs say so), serial autologin for labs.
set -eu
root="$1"
mkdir -p "$root/usr/lib/ostree"
printf '[composefs]\nenabled = true\n' > "$root/usr/lib/ostree/prepare-root.conf"
# Slim: every deploy hard-links each file of the commit and writes a composefs image over them,
# and every prune walks them all (a deploy: ~0.7 s per 1,000 files under TCG, measured). Out go
# the documentation (the copyright files stay), manual pages (no man in the guest),
# translations, and the kernel modules of hardware a QEMU guest never has. dpkg keeps later
# installs slim too.
cat > "$root/etc/dpkg/dpkg.cfg.d/bootlab-slim" <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
DPKG
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
for kver in $(ls "$root/usr/lib/modules"); do
  k="$root/usr/lib/modules/$kver/kernel"
  for d in sound drivers/media drivers/iio drivers/comedi drivers/staging drivers/infiniband \
    drivers/bluetooth drivers/nfc drivers/isdn drivers/w1 drivers/mmc drivers/memstick \
    drivers/leds drivers/hwmon drivers/edac drivers/platform drivers/mtd drivers/usb \
    drivers/net/wireless drivers/net/can drivers/net/ieee802154 drivers/net/wwan drivers/net/usb \
    net/wireless net/mac80211 net/bluetooth net/nfc net/ieee802154 net/can; do
    rm -rf "${k:?}/$d"
  done
  chroot "$root" depmod "$kver"
  chroot "$root" dracut --force --no-hostonly --add ostree --kver "$kver" "/usr/lib/modules/$kver/initramfs.img"
  cp "$root/boot/vmlinuz-$kver" "$root/usr/lib/modules/$kver/vmlinuz"
done
rm -rf "$root/boot/"*
for pair in root:roothome home:home opt:opt srv:srv mnt:mnt; do
  d=${pair%%:*}; v=${pair#*:}
  rm -rf "$root/$d"
  ln -s "var/$v" "$root/$d"
done
rm -rf "$root/usr/local"
ln -s ../var/usrlocal "$root/usr/local"
cat > "$root/usr/lib/tmpfiles.d/bootlab-var.conf" <<'TMPFILES'
d /var/roothome 0700 root root -
d /var/home 0755 root root -
d /var/opt 0755 root root -
d /var/srv 0755 root root -
d /var/mnt 0755 root root -
d /var/usrlocal 0755 root root -
d /var/usrlocal/bin 0755 root root -
TMPFILES
echo bootlab > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbootlab\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
echo 'root:bootlab' | chroot "$root" chpasswd
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %%I $TERM\n' \
  > "$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
# Left by package installs: not image content (bootc lint var-log / var-tmpfiles).
rm -rf "$root/var/log/"* "$root/var/cache/"* "$root/var/tmp/"*
