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
for kver in $(ls "$root/usr/lib/modules"); do
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
