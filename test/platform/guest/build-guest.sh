#!/usr/bin/env bash
# Builds the small Debian guest that the real-guest freeze test boots under qemu-system (TCG):
# debootstrap (bookworm, minbase) + Debian's kernel + qemu-guest-agent, a tiny init that starts
# qemu-ga on the virtio-serial port org.qemu.guest_agent.0 and mounts /dev/vdb on /data.
#
# Test set-up only: the output is never committed. It is cached under
#   ${ESNAP_GUEST_CACHE:-/var/cache/esnap-test-guest}/<hash of this script>/
# as vmlinuz, initrd.img and rootfs.img (raw ext4, booted as root=/dev/vda), so a second run
# prints the folder and exits at once. Changing this script changes the hash and rebuilds.
# Prints the cache folder as its last line on stdout.
#
# Needs root, debootstrap, mkfs.ext4 and the Debian mirror that apt on this machine uses
# (ESNAP_GUEST_MIRROR overrides it). Concurrent runs wait for each other (flock).
set -euo pipefail
export LC_ALL=C

SELF="$(readlink -f "$0")"
HASH="$(sha256sum "$SELF" | cut -c1-16)"
CACHE_ROOT="${ESNAP_GUEST_CACHE:-/var/cache/esnap-test-guest}"
OUT="$CACHE_ROOT/$HASH"
SUITE=bookworm

log() { echo "build-guest: $*" >&2; }

if [ -f "$OUT/ready" ]; then echo "$OUT"; exit 0; fi

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot)"; exit 2; }
for tool in debootstrap mkfs.ext4 chroot flock; do
  command -v "$tool" >/dev/null || { log "$tool is not installed (apt-get install debootstrap e2fsprogs util-linux)"; exit 2; }
done

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
flock 9
# Another run may have finished the build while we waited for the lock.
if [ -f "$OUT/ready" ]; then echo "$OUT"; exit 0; fi

# The Debian mirror apt already uses here (deb822 .sources first, then one-line sources.list).
mirror() {
  if [ -n "${ESNAP_GUEST_MIRROR:-}" ]; then echo "$ESNAP_GUEST_MIRROR"; return; fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")"
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }' "$f")"
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  echo "http://deb.debian.org/debian"
}

WORK="$CACHE_ROOT/.work-$$"
cleanup() {
  # Leave nothing mounted or half-built behind, also after a failure.
  umount "$WORK/rootfs/proc" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$CACHE_ROOT"/.work-* # left by a killed run (we hold the lock, so none is in use)
mkdir -p "$WORK"
ROOT="$WORK/rootfs"
START=$SECONDS

MIRROR="$(mirror)"
log "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase \
  --include=qemu-guest-agent,linux-image-amd64,initramfs-tools,kmod,util-linux,e2fsprogs \
  "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
log "debootstrap done after $((SECONDS - START)) s"

# A small initramfs with only what finds and mounts root=/dev/vda: under TCG every byte of a
# generic ("most") initramfs costs boot time.
cat >"$ROOT/etc/initramfs-tools/conf.d/esnap.conf" <<'CONF'
MODULES=list
COMPRESS=gzip
CONF
printf '%s\n' virtio_pci virtio_blk ext4 >"$ROOT/etc/initramfs-tools/modules"
mount -t proc proc "$ROOT/proc"
chroot "$ROOT" update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 || { cat "$WORK/initramfs.log" >&2; exit 1; }
umount "$ROOT/proc"

# PID 1 of the guest: no systemd or udev, just the mounts, qemu-ga on its port, and a ready line
# on the serial console for the host to wait for.
cat >"$ROOT/sbin/esnap-init" <<'INIT'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# The initramfs has moved /proc, /sys and /dev over already; these are for a boot without one.
mount -t proc proc /proc 2>/dev/null; mount -t sysfs sys /sys 2>/dev/null; mount -t devtmpfs dev /dev 2>/dev/null
mount -o remount,rw /
mkdir -p /run /data /tmp; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
modprobe virtio_console
# The data disk (virtio, second) is optional.
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vdb ] && break; sleep 0.2; done
if [ -b /dev/vdb ]; then mount /dev/vdb /data && echo "GUEST: /data mounted"; fi
PORT=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  for d in /sys/class/virtio-ports/*; do
    [ "$(cat "$d/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && PORT=/dev/$(basename "$d")
  done
  [ -n "$PORT" ] && break; sleep 0.2
done
echo "GUEST: qga port=$PORT"
/usr/sbin/qemu-ga -m virtio-serial -p "$PORT" -t /run -l /run/qga.log &
echo "GUEST-READY kernel=$(uname -r)"
while true; do sleep 3600; done
INIT
chmod 755 "$ROOT/sbin/esnap-init"

mkdir -p "$WORK/out"
cp "$(readlink -f "$ROOT/vmlinuz")" "$WORK/out/vmlinuz"
cp "$(readlink -f "$ROOT/initrd.img")" "$WORK/out/initrd.img"
# What the guest never needs: smaller image, faster mkfs.
rm -rf "$ROOT/boot"/* "$ROOT/usr/share/doc" "$ROOT/usr/share/man" "$ROOT/usr/share/locale" \
  "$ROOT/var/cache/apt/archives"/*.deb "$ROOT/var/lib/apt/lists"/*
SIZE_MB=$(( $(du -sm "$ROOT" | cut -f1) * 13 / 10 + 128 ))
mkfs.ext4 -q -F -L esnap-guest -d "$ROOT" "$WORK/out/rootfs.img" "${SIZE_MB}M" >&2
echo "$SUITE $(basename "$(readlink -f "$ROOT/vmlinuz")") built in $((SECONDS - START)) s" >"$WORK/out/ready"

# Publish atomically, then drop builds of older versions of this script.
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
for d in "$CACHE_ROOT"/*/; do
  [ "${d%/}" = "$OUT" ] || rm -rf "$d"
done
log "guest ready in $OUT after $((SECONDS - START)) s"
echo "$OUT"
