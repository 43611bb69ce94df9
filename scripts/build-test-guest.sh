#!/usr/bin/env bash
# Builds NovaCron's test guest from Debian packages: the kernel that bookworm's linux-image-amd64
# points to, an initramfs of busybox-static, the virtio, evdev and ACPI button modules and the
# static novacron-guest program (tools/guest), a blank qcow2 disk and the kernel command line to
# boot them with. The guest powers off when its ACPI power button is pressed (QMP
# system_powerdown): busybox acpid runs a handler that stops novacron-guest, whose stop line and
# /init's exit line then come before the power-off.
#
#   scripts/build-test-guest.sh [OUT_DIR]          (default: target/test-guest)
#
# With `ncdisk=1` on its command line the guest also writes a numbered record to its disk every
# second (see /init below), so that tests can check a disk's contents after a migration.
#
# Writes OUT_DIR/vmlinuz, OUT_DIR/initrd.img, OUT_DIR/disk.qcow2 and OUT_DIR/cmdline, and
# OUT_DIR/vmlinux: the same kernel unpacked, which QEMU starts through its PVH entry point about
# 4 s sooner under TCG. Nothing is installed on the host but the tools the build runs (cpio, kmod,
# qemu-utils, binutils, xz-utils; through apt-get, as root, when missing): the kernel and busybox
# .debs are fetched with `apt-get download` into OUT_DIR/cache and unpacked there. A second run
# with everything up to date downloads nothing and rewrites nothing.
#
# Environment:
#   KERNEL_PACKAGE      versioned kernel package to use instead of linux-image-amd64's dependency
#   NOVACRON_GUEST_BIN  a static novacron-guest binary to use instead of building one
#   GUEST_CMDLINE       the command line written to OUT_DIR/cmdline
#   DISK_SIZE           size of a newly created disk.qcow2 (default 64M)
#
# Boot it (TCG shown; the disk is used through an overlay so the base stays blank):
#   qemu-img create -q -f qcow2 -b "$PWD/target/test-guest/disk.qcow2" -F qcow2 /tmp/guest.qcow2
#   qemu-system-x86_64 -accel tcg -m 128 -smp 1 -nographic -no-reboot \
#     -kernel target/test-guest/vmlinuz -initrd target/test-guest/initrd.img \
#     -append "$(cat target/test-guest/cmdline)" -drive file=/tmp/guest.qcow2,if=virtio
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/test-guest}
# Modules the guest loads, with their dependencies, when the kernel has them as modules: evdev
# and button give the ACPI power button a /dev/input/event* node for acpid.
guest_modules=(virtio_pci virtio_blk virtio_net evdev button)
cmdline=${GUEST_CMDLINE:-console=ttyS0 quiet panic=-1 nc.mem=32M nc.dirty=1M}
disk_size=${DISK_SIZE:-64M}
guest_target=x86_64-unknown-linux-gnu

log() { echo "build-test-guest: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=$out/cache
mkdir -p "$cache"
work=$(mktemp -d "$cache/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- Host tools ---------------------------------------------------------------------------------
# depmod and modprobe live in /sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
need_apt=()
command -v apt-get >/dev/null || die "apt-get is required (a Debian host)"
command -v dpkg-deb >/dev/null || die "dpkg-deb is required (a Debian host)"
command -v cpio >/dev/null || need_apt+=(cpio)
command -v gzip >/dev/null || need_apt+=(gzip)
command -v depmod >/dev/null || need_apt+=(kmod)
command -v qemu-img >/dev/null || need_apt+=(qemu-utils)
command -v readelf >/dev/null || need_apt+=(binutils)
command -v xz >/dev/null || need_apt+=(xz-utils)

apt_updated=false
apt_update() {
  if ! $apt_updated; then
    log "apt-get update"
    apt-get update -q >&2 || die "apt-get update failed"
    apt_updated=true
  fi
}

if ((${#need_apt[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need_apt[*]}: install them or run as root"
  log "installing ${need_apt[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${need_apt[@]}" >&2; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${need_apt[@]}" >&2
  fi
fi

# --- Debian packages ----------------------------------------------------------------------------
# One `apt-cache show` (each call takes about a second) tells the kernel package that
# linux-image-amd64 depends on, with its version, and the version of busybox-static.
apt_show() {
  apt-cache show --no-all-versions linux-image-amd64 busybox-static ${KERNEL_PACKAGE:+"$KERNEL_PACKAGE"} \
    2>/dev/null || true
}
# The field $2 of package $1 in the `apt-cache show` output on stdin.
field() {
  awk -v pkg="$1" -v key="$2:" '$1 == "Package:" { this = $2 } this == pkg && $1 == key { print; exit }' |
    cut -d' ' -f2-
}
cached_deb() { find "$cache" -maxdepth 1 -name "$1_*.deb" -printf '%f\n' | sort -V | tail -n 1; }

apt_info=$(apt_show)
if [[ -z $apt_info ]] && [[ -z $(cached_deb 'linux-image-[0-9]*') || -z $(cached_deb busybox-static) ]]; then
  apt_update
  apt_info=$(apt_show)
fi
if [[ -n ${KERNEL_PACKAGE:-} ]]; then
  kernel_pkg=$KERNEL_PACKAGE
  kernel_want=$(field "$kernel_pkg" Version <<<"$apt_info")
else
  # "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
  read -r kernel_pkg _ kernel_want _ < <(field linux-image-amd64 Depends <<<"$apt_info" | cut -d, -f1 | tr -d '()') || true
  kernel_want=${kernel_want:-}
  if [[ -z ${kernel_pkg:-} ]]; then
    # apt knows nothing (offline, no lists): a kernel downloaded before still serves.
    kernel_pkg=$(cached_deb 'linux-image-[0-9]*')
    kernel_pkg=${kernel_pkg%%_*}
  fi
  [[ -n $kernel_pkg ]] || die "cannot tell which kernel linux-image-amd64 depends on"
fi
busybox_want=$(field busybox-static Version <<<"$apt_info")

# Prints the path of the .deb of package $1 at version $2 in the cache, downloading it unless it
# is there already. An empty $2 (apt knows nothing of the package) takes whatever is cached.
fetch_deb() {
  local pkg=$1 want=$2 deb
  for deb in "$cache/${pkg}"_*.deb; do
    [[ -e $deb ]] || continue
    if [[ -z $want || $(dpkg-deb -f "$deb" Version) == "$want" ]]; then
      echo "$deb"
      return
    fi
  done
  [[ -n $want ]] || die "apt knows no package $pkg and none is cached"
  log "downloading $pkg $want"
  mkdir -p "$work/dl"
  # As root, apt would warn that its _apt user cannot write here; it need not.
  (cd "$work/dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$want" >&2) ||
    die "could not download $pkg $want"
  deb=$(find "$work/dl" -name "${pkg}_*.deb" -print -quit)
  [[ -n $deb ]] || die "apt-get download left no .deb for $pkg"
  rm -f "$cache/${pkg}"_*.deb
  mv "$deb" "$cache/"
  echo "$cache/$(basename "$deb")"
}

kernel_deb=$(fetch_deb "$kernel_pkg" "$kernel_want")
busybox_deb=$(fetch_deb busybox-static "$busybox_want")

# --- Kernel and modules -------------------------------------------------------------------------
# Unpacking the kernel takes ~400 MB; only vmlinuz and the modules the guest loads are kept, in a
# directory named after the package version, with `modules.order` listing them in load order and
# `modules.wanted` the list they came from (another list unpacks the kernel again).
# Unpacks the kernel ELF image from bzImage $1 into $2 when it has a PVH entry point, which QEMU
# boots directly (`-kernel vmlinux`): that skips the xz decompression in the guest, which takes
# about 4 s under TCG. Debian compresses its kernels with xz; the stream follows the setup code.
# (xz stops at the stream's end: fed through a pipe, tail's SIGPIPE would fail it under pipefail.)
extract_vmlinux() {
  local offset
  offset=$(LC_ALL=C grep -obUa $'\xfd7zXZ' "$1" | awk -F: 'NR == 1 { print $1 }')
  if [[ -z $offset ]] ||
    ! xz -dcq --single-stream < <(tail -c +$((offset + 1)) "$1") >"$2" 2>/dev/null ||
    ! readelf -n "$2" 2>/dev/null | grep 'Xen .*(0x00000012)' >/dev/null; then
    log "warning: no PVH kernel image in $(basename "$1"); only vmlinuz is written"
    rm -f "$2"
  fi
}

kernel_version=$(dpkg-deb -f "$kernel_deb" Version)
kernel_dir=$cache/tree-$kernel_pkg-$kernel_version
if [[ ! -f $kernel_dir/modules.order ||
  $(cat "$kernel_dir/modules.wanted" 2>/dev/null) != "${guest_modules[*]}" ]]; then
  log "unpacking $(basename "$kernel_deb")"
  rm -rf "$cache"/tree-linux-image-*
  dpkg-deb -x "$kernel_deb" "$work/kernel"
  kver=$(basename "$(find "$work/kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d -print -quit)")
  [[ -n $kver ]] || die "$(basename "$kernel_deb") has no /lib/modules"
  mkdir -p "$work/kept"
  cp "$work/kernel/boot/vmlinuz-$kver" "$work/kept/vmlinuz"
  extract_vmlinux "$work/kept/vmlinuz" "$work/kept/vmlinux"
  depmod -b "$work/kernel" "$kver"
  : >"$work/kept/modules.order"
  for module in "${guest_modules[@]}"; do
    # One `insmod <path>` line per module to load, dependencies first; `builtin <name>` lines
    # (built into the kernel) need nothing.
    modprobe -d "$work/kernel" -S "$kver" --show-depends "$module" >"$work/deps" ||
      die "kernel $kver has no module $module"
    while read -r verb path _; do
      [[ $verb == insmod ]] || continue
      name=$(basename "$path")
      [[ $name == *.ko ]] || die "$name: only uncompressed modules can be loaded by busybox insmod"
      if ! grep -qx "$name" "$work/kept/modules.order"; then
        cp "$path" "$work/kept/$name"
        echo "$name" >>"$work/kept/modules.order"
      fi
    done <"$work/deps"
  done
  echo "$kver" >"$work/kept/release"
  echo "${guest_modules[*]}" >"$work/kept/modules.wanted"
  rm -rf "$work/kernel"
  mv "$work/kept" "$kernel_dir"
fi
kver=$(cat "$kernel_dir/release")

busybox_version=$(dpkg-deb -f "$busybox_deb" Version)
busybox_dir=$cache/tree-busybox-static-${busybox_version//:/_}
if [[ ! -x $busybox_dir/busybox ]]; then
  log "unpacking $(basename "$busybox_deb")"
  rm -rf "$cache"/tree-busybox-static-*
  dpkg-deb -x "$busybox_deb" "$work/busybox"
  mkdir -p "$work/busybox-kept"
  cp "$work/busybox/bin/busybox" "$work/busybox-kept/busybox"
  mv "$work/busybox-kept" "$busybox_dir"
fi

# --- The guest program --------------------------------------------------------------------------
if [[ -n ${NOVACRON_GUEST_BIN:-} ]]; then
  guest_bin=$NOVACRON_GUEST_BIN
else
  log "building novacron-guest (static, $guest_target)"
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  (cd "$root" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" CARGO_TARGET_DIR=$target_dir \
    cargo build --quiet --release -p novacron-guest --target "$guest_target")
  guest_bin=$target_dir/$guest_target/release/novacron-guest
fi
[[ -x $guest_bin ]] || die "no guest program at $guest_bin"
for bin in "$guest_bin" "$busybox_dir/busybox"; do
  # N.B. no `grep -q` after a pipe here: under pipefail, readelf's SIGPIPE would fail the test.
  if readelf -l "$bin" | grep 'program interpreter' >/dev/null; then
    die "$bin is dynamically linked; the initramfs has no libraries"
  fi
done

# --- Initramfs ----------------------------------------------------------------------------------
stage=$work/initramfs
mkdir -p "$stage"/{bin,dev,etc/acpi/PWRF,proc,sys,tmp,lib/modules}
cp "$busybox_dir/busybox" "$stage/bin/busybox"
if command -v strip >/dev/null; then
  strip -o "$stage/bin/novacron-guest" "$guest_bin"
else
  cp "$guest_bin" "$stage/bin/novacron-guest"
fi
while read -r name; do
  cp "$kernel_dir/$name" "$stage/lib/modules/$name"
done <"$kernel_dir/modules.order"
cp "$kernel_dir/modules.order" "$stage/etc/modules"
cat >"$stage/init" <<'EOF'
#!/bin/busybox sh
# NovaCron test guest: mount the basics, load the modules, start acpid for the power button, run
# novacron-guest, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "NCGUEST init kernel=$(uname -r) uptime_s=$(cut -d' ' -f1 /proc/uptime)" \
  "mem_total_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" \
  "mem_available_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)"
while read -r module; do
  insmod "/lib/modules/$module" || echo "NCGUEST init insmod-failed module=$module"
done </etc/modules
# The ACPI power button is an input device once button and evdev are loaded (its event node is
# there when insmod returns): acpid, in the background, runs /etc/acpi/PWRF/00000080 on KEY_POWER.
if grep -qx "Power Button" /sys/class/input/input*/name 2>/dev/null; then
  acpid -l /dev/null -p /tmp/acpid.pid
else
  echo "NCGUEST init power-button=none"
fi
# A virtio block device (virtio id 2) is probed when its driver loads; wait briefly for its node.
if grep -qx 0x0002 /sys/bus/virtio/devices/*/device 2>/dev/null; then
  tries=0
  while [ ! -b /dev/vda ] && [ "$tries" -lt 50 ]; do
    usleep 100000
    tries=$((tries + 1))
  done
fi
if [ -b /dev/vda ]; then
  echo "NCGUEST init disk=/dev/vda bytes=$(blockdev --getsize64 /dev/vda)"
  # With ncdisk=1 on the command line, write one 16-byte record "NCDISK %08d\n" per second at
  # offset 16 * seq, each synced to the disk: whoever reads the disk later (after a migration)
  # finds every record up to the last one the console reported.
  if grep -qw ncdisk=1 /proc/cmdline; then
    (
      seq=0
      while :; do
        printf 'NCDISK %08d\n' "$seq" | dd of=/dev/vda bs=16 seek="$seq" conv=notrunc,fsync 2>/dev/null \
          && echo "NCGUEST disk-write seq=$seq"
        seq=$((seq + 1))
        sleep 1
      done
    ) &
  fi
fi
for dev in /sys/class/net/*; do
  name=${dev##*/}
  [ "$name" = lo ] && continue
  ip link set "$name" up 2>/dev/null
  echo "NCGUEST init net=$name mac=$(cat "$dev/address")"
done
/bin/novacron-guest
echo "NCGUEST exit status=$?"
sync
poweroff -f
EOF
chmod 755 "$stage/init"
cat >"$stage/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
# Run by acpid when the power button is pressed: stop novacron-guest, after which /init writes
# its exit status, syncs and powers off; power off here if it is not running or does not end.
exec >/dev/console 2>&1
echo "NCGUEST poweroff"
if pid=$(pidof novacron-guest); then
  kill -TERM $pid
  sleep 5
fi
sync
poweroff -f
EOF
chmod 755 "$stage/etc/acpi/PWRF/00000080"
if [[ $(id -u) == 0 ]]; then
  # The kernel's own early rootfs has /dev/console too; this keeps it there for any kernel.
  mknod -m 600 "$stage/dev/console" c 5 1
  mknod -m 666 "$stage/dev/null" c 1 3
fi
# Fixed times and owners make the archive a function of its contents.
find "$stage" -exec touch -h -d @0 {} +

stamp=$( (
  cd "$stage"
  find . -mindepth 1 -printf '%p %y %m %l\n' | LC_ALL=C sort
  find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
) | sha256sum | cut -d' ' -f1)
if [[ -f $out/initrd.img && $(cat "$out/.initrd.stamp" 2>/dev/null) == "$stamp" ]]; then
  log "initrd.img is up to date"
else
  log "writing initrd.img"
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9n >"$work/initrd.img"
  mv "$work/initrd.img" "$out/initrd.img"
  echo "$stamp" >"$out/.initrd.stamp"
fi

# --- Kernel, disk, command line -----------------------------------------------------------------
if ! cmp -s "$kernel_dir/vmlinuz" "$out/vmlinuz"; then
  log "writing vmlinuz ($kver)"
  cp "$kernel_dir/vmlinuz" "$work/vmlinuz"
  mv "$work/vmlinuz" "$out/vmlinuz"
fi
if [[ -f $kernel_dir/vmlinux ]] && ! cmp -s "$kernel_dir/vmlinux" "$out/vmlinux"; then
  log "writing vmlinux (PVH entry, boots without decompressing)"
  cp "$kernel_dir/vmlinux" "$work/vmlinux"
  mv "$work/vmlinux" "$out/vmlinux"
elif [[ ! -f $kernel_dir/vmlinux ]]; then
  rm -f "$out/vmlinux"
fi
if [[ ! -f $out/disk.qcow2 ]]; then
  log "creating disk.qcow2 ($disk_size)"
  qemu-img create -q -f qcow2 "$work/disk.qcow2" "$disk_size"
  mv "$work/disk.qcow2" "$out/disk.qcow2"
fi
if [[ $(cat "$out/cmdline" 2>/dev/null) != "$cmdline" ]]; then
  echo "$cmdline" >"$out/cmdline"
fi

kernels=vmlinuz
[[ -f $out/vmlinux ]] && kernels="vmlinuz and vmlinux"
log "ready in $out: $kernels ($kver), initrd.img ($(du -h "$out/initrd.img" | cut -f1)), disk.qcow2, cmdline"
log "cmdline: $cmdline"
