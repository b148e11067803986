#!/usr/bin/env bash
# Builds the guest lab's kernel and base initramfs into OUT (an empty directory that build.ts
# renames into the cache once this succeeds):
#   OUT/vmlinuz      Debian's kernel (from the image package KERNEL_PKG, fetched by apt-get download)
#   OUT/vmlinux      the same kernel decompressed (when it has a PVH entry): QEMU boots that ELF
#                    directly, skipping about 3 s of decompression under software emulation
#   OUT/initrd.img   an uncompressed newc cpio: static busybox, dropbear and qemu-ga (+ the shared
#                    libraries ldd lists), the kernel modules for virtio-pci/blk/net/console, ext4,
#                    the ACPI power button and evdev with their dependencies, acpid's power-button
#                    action, and ./init. It holds no key: vm.ts appends a per-boot archive.
#   OUT/manifest     key=value lines (kernel version, module load order, package versions)
# Usage: build-initramfs.sh OUT WORK KERNEL_PKG
#   WORK: an empty scratch directory (removed by the caller); run as root (mknod, apt-get download).
set -euo pipefail
export LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin

USAGE="usage: build-initramfs.sh OUT WORK KERNEL_PKG"
OUT=${1:?$USAGE}
WORK=${2:?$USAGE}
KERNEL_PKG=${3:?$USAGE}
HERE=$(cd "$(dirname "$0")" && pwd)
# The modules the guest needs; everything they depend on is found from their depends= fields.
# button: the ACPI power button (CONFIG_ACPI_BUTTON=m in Debian's kernel), whose key events acpid
# reads through evdev; virtio_console: the virtio-serial port the guest agent talks on.
ROOT_MODULES=(virtio_pci virtio_blk virtio_net ext4 button evdev virtio_console)

die() {
  echo "build-initramfs: $*" >&2
  exit 1
}
step() { echo "build-initramfs: $*" >&2; }

for tool in apt-get dpkg dpkg-query modinfo depmod cpio ldd xz busybox dropbear dropbearkey qemu-ga; do
  command -v "$tool" >/dev/null || die "missing $tool (packages: kmod cpio busybox-static dropbear-bin qemu-guest-agent)"
done
[ -d "$OUT" ] || die "no output directory $OUT"
BUSYBOX=$(command -v busybox)
# Only the static busybox works in an initramfs without its libraries.
if ldd "$BUSYBOX" >/dev/null 2>&1; then die "$BUSYBOX is dynamically linked: install busybox-static"; fi

[ -d "$WORK" ] || die "no work directory $WORK"

# --- the kernel -------------------------------------------------------------------------------
step "downloading $KERNEL_PKG"
(cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$KERNEL_PKG" >&2) ||
  die "apt-get download $KERNEL_PKG failed (has apt-get update run?)"
DEB=$(ls "$WORK"/"$KERNEL_PKG"_*.deb 2>/dev/null | head -n1)
[ -n "$DEB" ] || die "apt-get download left no .deb for $KERNEL_PKG"
KERNEL_DEB_VERSION=$(dpkg-deb -f "$DEB" Version)
step "unpacking $(basename "$DEB")"
dpkg -x "$DEB" "$WORK/kernel"
rm -f "$DEB"
VMLINUZ=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n1)
[ -f "$VMLINUZ" ] || die "no vmlinuz in $KERNEL_PKG"
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$WORK/kernel/lib/modules/$KVER
[ -d "$MODDIR" ] || die "no modules for $KVER"
# depmod only to get modules.alias (a softdep like "pre: crypto-crc32c" names an alias); the
# load order itself comes from each module's depends= below.
depmod -b "$WORK/kernel" "$KVER"

declare -A MODPATH=()
while IFS= read -r -d '' f; do
  base=${f##*/}
  base=${base%.ko*}
  MODPATH[${base//-/_}]=$f
done < <(find "$MODDIR/kernel" -name '*.ko*' -print0)

# An alias to a module name; among several, the generic C implementation (the accelerated ones
# need CPU features that QEMU's default TCG CPU may lack), else the first.
resolve_alias() {
  local alias=$1 names
  if [ -n "${MODPATH[${alias//-/_}]:-}" ]; then
    echo "${alias//-/_}"
    return
  fi
  names=$(awk -v a="$alias" '$1 == "alias" && $2 == a { print $3 }' "$MODDIR/modules.alias" | tr - _)
  [ -n "$names" ] || return 0
  echo "$names" | grep -m1 '_generic$' || echo "$names" | head -n1
}

ORDER=()
declare -A STATE=()
visit() {
  local name=$1 f dep soft word
  case "${STATE[$name]:-}" in
    done) return ;;
    visiting) die "module dependency cycle at $name" ;;
  esac
  f=${MODPATH[$name]:-}
  [ -n "$f" ] || die "module $name not found in $KERNEL_PKG"
  STATE[$name]=visiting
  for dep in $(modinfo -F depends "$f" | tr ',' ' '); do visit "${dep//-/_}"; done
  # softdep "pre: a b post: c": the pre: modules must be there first (ext4 and jbd2 need crc32c).
  soft=$(modinfo -F softdep "$f" || true)
  local in_pre=0
  for word in $soft; do
    case "$word" in
      pre:) in_pre=1 ;;
      post:) in_pre=0 ;;
      *)
        if [ "$in_pre" = 1 ]; then
          dep=$(resolve_alias "$word")
          if [ -n "$dep" ]; then visit "$dep"; else step "softdep $word of $name: no module, skipped"; fi
        fi
        ;;
    esac
  done
  STATE[$name]=done
  ORDER+=("$name")
}
for m in "${ROOT_MODULES[@]}"; do visit "$m"; done
step "modules in load order: ${ORDER[*]}"

# --- the initramfs tree -----------------------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/reclaim,etc/acpi,lib/modules,lib64,dev,proc,sys,run,tmp,root,data,var/log}
ln -s ../run "$R/var/run"
chmod 1777 "$R/tmp"
chmod 700 "$R/root"

cp "$BUSYBOX" "$R/bin/busybox"
# The applet links, relative to /bin/busybox. busybox --list-full names bin/busybox itself:
# linking that would replace the binary by a symlink to itself, so it and anything present are skipped.
while IFS= read -r applet; do
  [ "${applet##*/}" = busybox ] && continue
  [ -e "$R/$applet" ] || [ -L "$R/$applet" ] && continue
  mkdir -p "$R/$(dirname "$applet")"
  case "$applet" in
    bin/*) ln -s busybox "$R/$applet" ;;
    sbin/*) ln -s ../bin/busybox "$R/$applet" ;;
    usr/bin/* | usr/sbin/*) ln -s ../../bin/busybox "$R/$applet" ;;
    *) ln -s /bin/busybox "$R/$applet" ;;
  esac
done < <("$BUSYBOX" --list-full)
[ -f "$R/bin/busybox" ] && [ ! -L "$R/bin/busybox" ] || die "the busybox binary was overwritten"

# dropbear, dropbearkey and qemu-ga with the libraries ldd finds, at the same paths (and the loader).
copy_with_libs() {
  local bin=$1 dest=$2 lib
  cp "$bin" "$R/$dest"
  for lib in $(ldd "$bin" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
    [ -e "$R$lib" ] && continue
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
  done
}
rm -f "$R/usr/sbin/dropbear" "$R/usr/bin/dropbearkey"
copy_with_libs "$(command -v dropbear)" usr/sbin/dropbear
copy_with_libs "$(command -v dropbearkey)" usr/bin/dropbearkey
copy_with_libs "$(command -v qemu-ga)" usr/sbin/qemu-ga
if [ "$(id -u)" = 0 ]; then
  chroot "$R" /usr/bin/dropbearkey -h >/dev/null 2>&1 || [ $? -eq 1 ] ||
    die "dropbearkey does not run inside the tree (missing libraries?)"
  chroot "$R" /usr/sbin/qemu-ga --version >/dev/null 2>&1 ||
    die "qemu-ga does not run inside the tree (missing libraries?)"
fi

# busybox acpid maps the power button's key event to "PWRF"; this action file names the script
# (relative to /etc/acpi) it runs then. poweroff signals init, which shuts down cleanly.
echo "PWRF power-button" >"$R/etc/acpid.conf"
cat >"$R/etc/acpi/power-button" <<'EOF'
#!/bin/sh
exec /sbin/poweroff
EOF
# What qemu-ga's guest-shutdown runs (`shutdown -h -P +0 MESSAGE`; -r to reboot). busybox has no
# shutdown, so this one asks init like poweroff does, or refuses in a guest booted with
# reclaim.noacpi (then libvirt falls back to the power button, which that guest ignores too).
[ ! -e "$R/sbin/shutdown" ] || die "busybox now has a shutdown applet: check /sbin/shutdown"
cat >"$R/sbin/shutdown" <<'EOF'
#!/bin/sh
case " $(cat /proc/cmdline) " in
  *" reclaim.noacpi "*)
    echo "shutdown: refused (reclaim.noacpi)" >&2
    exit 1
    ;;
esac
case " $* " in
  *" -r "*) exec /sbin/reboot ;;
  *) exec /sbin/poweroff ;;
esac
EOF

for m in "${ORDER[@]}"; do
  f=${MODPATH[$m]}
  case "$f" in
    *.ko) cp "$f" "$R/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" >"$R/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$R/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$f" >"$R/lib/modules/$m.ko" ;;
    *) die "unknown module format: $f" ;;
  esac
  echo "$m"
done >"$R/etc/reclaim/modules"

cp "$HERE/init" "$R/init"
cp "$HERE/udhcpc.script" "$R/etc/reclaim/udhcpc.script"
chmod 755 "$R/init" "$R/etc/reclaim/udhcpc.script" "$R/etc/acpi/power-button" "$R/sbin/shutdown"
cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
tty:x:5:
EOF
echo "/bin/sh" >"$R/etc/shells"
echo "passwd: files" >"$R/etc/nsswitch.conf"
echo "group: files" >>"$R/etc/nsswitch.conf"
# So the kernel hands /init a console before devtmpfs is mounted (init also reopens it after).
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null && mknod -m 666 "$R/dev/null" c 1 3 ||
  step "cannot mknod (not root?): init opens the console once devtmpfs is mounted"

(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner 0:0 --quiet) >"$OUT/initrd.img"
cp "$VMLINUZ" "$OUT/vmlinuz"
# The uncompressed kernel for QEMU's PVH boot: the xz stream inside the bzImage (Debian builds
# with CONFIG_KERNEL_XZ), kept only when the kernel has a PVH entry point and it unpacks to an ELF.
PVH=no
if grep -q '^CONFIG_PVH=y' "$WORK/kernel/boot/config-$KVER"; then
  offset=$(grep -abo $'\xFD7zXZ\x00' "$VMLINUZ" | head -n1 | cut -d: -f1 || true)
  if [ -n "$offset" ] &&
    (set +o pipefail && tail -c "+$((offset + 1))" "$VMLINUZ" | xz -dc --single-stream >"$OUT/vmlinux") 2>/dev/null &&
    [ "$(head -c 4 "$OUT/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
    PVH=yes
  else
    rm -f "$OUT/vmlinux"
    step "no xz-compressed ELF in $(basename "$VMLINUZ"): booting the bzImage (slower)"
  fi
fi
{
  echo "kernel_package=$KERNEL_PKG"
  echo "kernel_package_version=$KERNEL_DEB_VERSION"
  echo "kernel_version=$KVER"
  echo "pvh=$PVH"
  echo "modules=${ORDER[*]}"
  echo "busybox=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || "$BUSYBOX" | head -n1)"
  echo "dropbear=$(dpkg-query -W -f '${Version}' dropbear-bin 2>/dev/null || echo unknown)"
  echo "qemu_ga=$(dpkg-query -W -f '${Version}' qemu-guest-agent 2>/dev/null || echo unknown)"
  echo "initrd_bytes=$(stat -c %s "$OUT/initrd.img")"
} >"$OUT/manifest"
step "done: $KVER, initrd $(($(stat -c %s "$OUT/initrd.img") / 1024)) KiB"
