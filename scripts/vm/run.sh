#!/usr/bin/env bash
# Runs a command as root inside a throwaway VM with Debian's cloud kernel: pure
# cgroup v2 with every controller, AppArmor enabled, overlayfs and veth loaded.
# The host here has hybrid cgroups and no AppArmor; this is where tests of
# cgroup v2 and AppArmor behaviour run.
#
# Usage: scripts/vm/run.sh [--include HOST[:GUEST]]... [--mem MiB] [--disk MiB] -- CMD [ARG]...
#   --include   copy a file or directory into the guest (default GUEST path: the
#               same as HOST). Executables get their shared libraries too.
#   --disk      attach an empty virtio disk of that size (the guest's /dev/vda),
#               with the virtio_blk and bfq modules loaded, for io controller tests.
# Prints the guest's console; exits with CMD's exit status (125 if the VM failed).
# Needs root only to install packages; software emulation (TCG), so no /dev/kvm.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${VM_CACHE:-/var/cache/container-blocks-vm}
mem=1024
disk=0
includes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --include) includes+=("$2"); shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --disk) disk=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "scripts/vm/run.sh: unknown option $1 (see the usage at the top of the script)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "scripts/vm/run.sh: no command given after --" >&2; exit 2; }

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v apparmor_parser >/dev/null || [ -x /sbin/apparmor_parser ] || need+=(apparmor)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The kernel: the current dependency of linux-image-cloud-amd64, unpacked once.
mkdir -p "$cache"
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$pkg" ] || { apt-get update -qq; pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}'); }
kver=${pkg#linux-image-}
if [ ! -f "$cache/$kver/boot/vmlinuz-$kver" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1)
  mkdir -p "$cache/$kver"
  dpkg -x "$tmp"/*.deb "$cache/$kver"
  rm -rf "$tmp"
fi
kdir=$cache/$kver

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,newroot,lib/modules}
cp /bin/busybox "$root/bin/busybox"

copy_in() { # HOST GUEST: the file or tree, plus shared libraries of executables
  local src=$1 dst=$2
  mkdir -p "$root$(dirname "$dst")"
  cp -a "$src" "$root$dst"
  find "$src" -type f -perm -u+x 2>/dev/null | while read -r f; do
    { ldd "$f" 2>/dev/null || true; } | { grep -oE '/[^ ]+' || true; } | while read -r lib; do
      [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
    done
  done
}
# The guest loads /lib/modules/*.ko in name order: the prefixes put each
# module after the ones it needs.
modules=(fs/overlayfs/overlay.ko drivers/net/veth.ko)
[ "$disk" -gt 0 ] && modules+=(drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko
  drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci_legacy_dev.ko
  drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko block/bfq.ko)
n=10
for m in "${modules[@]}"; do
  cp "$kdir/lib/modules/$kver/kernel/$m" "$root/lib/modules/$n-$(basename "$m")"
  n=$((n + 1))
done
aa=$(command -v apparmor_parser || echo /sbin/apparmor_parser)
copy_in "$aa" /sbin/apparmor_parser
for inc in "${includes[@]}"; do
  copy_in "${inc%%:*}" "$( [[ $inc == *:* ]] && echo "${inc#*:}" || echo "${inc%%:*}")"
done

printf '%q ' "$@" > "$root/etc/vm-command"
cp "$here/init" "$root/init"
cp "$here/init2" "$root/init2"
chmod +x "$root/init" "$root/init2"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$root.cpio.gz"
trap 'rm -rf "$root" "$root.cpio.gz"' EXIT

log=$(mktemp)
drive=()
if [ "$disk" -gt 0 ]; then
  img=$(mktemp)
  truncate -s "${disk}M" "$img"
  drive=(-drive "file=$img,if=virtio,format=raw")
fi
trap 'rm -rf "$root" "$root.cpio.gz" "$log" ${img:+"$img"}' EXIT
timeout "${VM_TIMEOUT:-600}" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m "$mem" \
  -nographic -no-reboot -monitor none -serial stdio \
  -kernel "$kdir/boot/vmlinuz-$kver" -initrd "$root.cpio.gz" "${drive[@]}" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all apparmor=1 security=apparmor" \
  </dev/null | tee "$log" || true
status=$(grep -aoE 'VM-EXIT-STATUS=[0-9]+' "$log" | tail -1 | cut -d= -f2)
if [ -z "$status" ]; then
  echo "scripts/vm/run.sh: the VM ended without reporting the command's status" >&2
  exit 125
fi
exit "$status"
