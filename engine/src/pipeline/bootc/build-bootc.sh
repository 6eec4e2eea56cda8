# Runs inside the bootc build container (no network): compiles bootc from the unpacked source
# with the host's Rust toolchain, then lays it out under $2 the way upstream's
# `make install install-ostree-hooks` does for the ostree backend (what a bootc image needs).
# Not laid out: system-reinstall-bootc, bootc-initramfs-setup (composefs-native backend only),
# man pages (need an extra xtask build).
# Usage: bash build-bootc.sh SRC DESTDIR LOG
set -euo pipefail
src="$1"; dest="$2"; log="$3"
cd "$src"
cargo --version
# Upstream's release profile (thin LTO, full debuginfo) suits a distribution package; a lab
# machine needs a working bootc soon. Without LTO and debuginfo the compile takes ~0.6x as long
# on 2 cores (346 s vs 581 s, measured one after the other on an idle machine) for the same code at opt-level 3.
export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_DEBUG=false
cargo build --release --locked --offline -p bootc 2>&1 | tee "$log"
bin=target/release/bootc
install -D -m 0755 -t "$dest/usr/bin" "$bin"
install -d -m 0755 "$dest/usr/lib/bootc/bound-images.d" "$dest/usr/lib/bootc/kargs.d" "$dest/usr/lib/bootc/install"
ln -s "$(realpath -m -s --relative-to=/usr/lib/bootc/storage /sysroot/ostree/bootc/storage)" "$dest/usr/lib/bootc/storage"
install -D -m 0755 crates/cli/bootc-generator-stub "$dest/usr/lib/systemd/system-generators/bootc-systemd-generator"
install -D -m 0644 -t "$dest/usr/lib/systemd/system" systemd/*.service systemd/*.timer systemd/*.path systemd/*.target
install -D -m 0644 -t "$dest/usr/share/doc/bootc/baseimage/base/usr/lib/ostree/" baseimage/base/usr/lib/ostree/prepare-root.conf
mkdir -p "$dest/usr/share/bash-completion/completions"
"$bin" completion bash > "$dest/usr/share/bash-completion/completions/bootc"
install -d "$dest/usr/libexec/libostree/ext"
for x in ostree-container ostree-ima-sign ostree-provisional-repair; do
  ln -sf ../../../bin/bootc "$dest/usr/libexec/libostree/ext/$x"
done
"$bin" --version | tee "$(dirname "$dest")/bootc-version"
