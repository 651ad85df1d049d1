#!/usr/bin/env bash
# boot/linux-image/build.sh - build the netdeploy Linux test boot image.
#
# Usage: boot/linux-image/build.sh [--force] OUT_DIR
#
# Writes OUT_DIR/vmlinuz (Debian's current linux-image-amd64 kernel) and
# OUT_DIR/initrd.img (busybox initramfs with virtio, CD-ROM/ISO and USB storage
# modules, the task sequence agent /bin/netdeploy-agent and the tools of its
# disk steps (sfdisk, partx, blockdev, mkfs.vfat, mkfs.ext4, mkswap with the
# shared libraries they need, taken from this machine); /init prints
# "NETDEPLOY-BOOT-OK mac=... cmdline=...", runs the agent when the kernel
# command line has netdeploy.server=, then powers off), and partclone.extfs,
# partclone.fat and partclone.ntfs with the shared libraries they need, copied
# from this host, for capture_image (docs/image-format.md).
# The agent is built first, statically linked (cargo build -p netdeploy-agent
# --release, -C target-feature=+crt-static) into target/linux-image-agent/.
# Cached: nothing else is done when both files exist and are newer than the
# inputs (this script, init, udhcpc.script, the agent binary). --force
# rebuilds anyway.
#
# Environment:
#   NETDEPLOY_KERNEL_PACKAGE  Debian kernel package to use instead of the one
#                             linux-image-amd64 depends on
#   NETDEPLOY_KERNEL_DEB      path to an already downloaded kernel .deb
#   NETDEPLOY_AGENT_BIN       a static netdeploy-agent binary to use instead of
#                             building one
#
# Needs: cargo (or NETDEPLOY_AGENT_BIN), apt-get, apt-cache, dpkg-deb, cpio,
# gzip, busybox (busybox-static), ldd, partclone, and the disk tools: fdisk
# (sfdisk), util-linux (partx, blockdev, mkswap), dosfstools (mkfs.vfat),
# e2fsprogs (mkfs.ext4, e2fsck and resize2fs, which grow an applied ext4); root only if the apt lists are missing (apt-get update).
set -euo pipefail

PROG="$(basename "$0")"
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SRC_DIR/../.." && pwd)"
INITRD_VERSION=5
INPUTS=("$SRC_DIR/build.sh" "$SRC_DIR/init" "$SRC_DIR/udhcpc.script")
# Its own target dir: the static flags must not rebuild the workspace's release build.
AGENT_TARGET_DIR="$REPO_DIR/target/linux-image-agent"

# What the agent's disk steps run (boot/agent/src/disk/linux.rs). These are the
# Debian builds of this machine, copied with the shared libraries ldd names.
DISK_TOOLS=(sfdisk partx blockdev mkfs.vfat mkfs.ext4 mkswap e2fsck resize2fs)

# Modules loaded by /init (plus their dependencies, from modules.dep).
# Network first so the marker line comes early; built-in modules are skipped.
REQUIRED_MODULES=(virtio_pci virtio_net virtio_blk)
OPTIONAL_MODULES=(
    virtio_scsi
    ata_piix ahci sd_mod sr_mod cdrom isofs
    xhci_pci ehci_pci uhci_hcd ohci_pci usb_storage uas
    vfat nls_cp437 nls_ascii nls_iso8859_1 nls_utf8
    crc32c_generic ext4
)

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

force=0
out_dir=""
while (($# > 0)); do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --force) force=1 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
        [[ -z "$out_dir" ]] || die "only one OUT_DIR may be given (see --help)"
        out_dir="$1"
        ;;
    esac
    shift
done
[[ -n "$out_dir" ]] || die "missing OUT_DIR (see --help)"

for f in "${INPUTS[@]}"; do
    [[ -f "$f" ]] || die "missing input file $f"
done

# --- agent -----------------------------------------------------------------
# Built on every run (a no-op for cargo when nothing changed, and then the
# binary keeps its mtime), so the cache check below sees a changed agent.
build_agent() {
    local host
    command -v cargo >/dev/null 2>&1 ||
        die "missing command 'cargo' to build the agent (or set NETDEPLOY_AGENT_BIN)"
    host="$(rustc -vV | awk '$1 == "host:" { print $2 }')"
    [[ -n "$host" ]] || die "cannot tell the host target from 'rustc -vV'"
    log "building netdeploy-agent (static, $host)"
    # An explicit --target keeps +crt-static away from build scripts and proc
    # macros, which cannot be static. glibc's static libc is enough: the agent
    # uses no NSS or DNS (its URLs carry IP addresses).
    # CARGO_ENCODED_RUSTFLAGS would win over RUSTFLAGS: drop any inherited one.
    (cd "$REPO_DIR" &&
        env -u CARGO_ENCODED_RUSTFLAGS \
            RUSTFLAGS="-C target-feature=+crt-static" \
            CARGO_TARGET_DIR="$AGENT_TARGET_DIR" \
            CARGO_PROFILE_RELEASE_DEBUG=0 \
            CARGO_PROFILE_RELEASE_STRIP=symbols \
            CARGO_PROFILE_RELEASE_LTO=true \
            CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
            CARGO_PROFILE_RELEASE_PANIC=abort \
            cargo build -p netdeploy-agent --release --target "$host" >&2) ||
        die "building netdeploy-agent failed"
    AGENT_BIN="$AGENT_TARGET_DIR/$host/release/netdeploy-agent"
}
if [[ -n "${NETDEPLOY_AGENT_BIN:-}" ]]; then
    AGENT_BIN="$NETDEPLOY_AGENT_BIN"
else
    build_agent
fi
[[ -x "$AGENT_BIN" ]] || die "no agent binary at $AGENT_BIN"
# ldd lists the shared libraries of a dynamic binary as "name => path"; for a
# static (or static-pie) one it lists none.
if [[ "$(ldd "$AGENT_BIN" 2>&1 || true)" == *"=>"* ]]; then
    die "$AGENT_BIN is dynamically linked; the initramfs has no libc"
fi
INPUTS+=("$AGENT_BIN")

# --- cache check -----------------------------------------------------------
up_to_date() {
    local out f
    for out in "$out_dir/vmlinuz" "$out_dir/initrd.img"; do
        [[ -s "$out" ]] || return 1
        for f in "${INPUTS[@]}"; do
            [[ "$out" -nt "$f" ]] || return 1
        done
    done
    return 0
}
if ((force == 0)) && up_to_date; then
    log "up to date: $out_dir/vmlinuz $out_dir/initrd.img"
    exit 0
fi

for c in dpkg-deb cpio gzip find sort; do
    command -v "$c" >/dev/null 2>&1 || die "missing command '$c'"
done
BUSYBOX=""
for b in /bin/busybox /usr/bin/busybox "$(command -v busybox || true)"; do
    if [[ -n "$b" && -x "$b" ]]; then
        BUSYBOX="$b"
        break
    fi
done
[[ -n "$BUSYBOX" ]] || die "busybox not found (install busybox-static)"
declare -A disk_tool=()
for t in "${DISK_TOOLS[@]}"; do
    p="$(PATH="$PATH:/usr/sbin:/sbin" command -v "$t" || true)"
    [[ -n "$p" ]] || die "missing disk tool '$t' (Debian packages fdisk, util-linux, dosfstools, e2fsprogs)"
    disk_tool[$t]="$p"
done
# A static binary has no interpreter: ldd fails on it.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
fi

mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/netdeploy-linux-image.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# --- kernel package --------------------------------------------------------
apt_updated=0
apt_update() {
    ((apt_updated == 0)) || return 1
    apt_updated=1
    [[ "$(id -u)" -eq 0 ]] || die "apt lists look missing and apt-get update needs root; run 'apt-get update' first"
    log "running apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
}

resolve_kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

deb="${NETDEPLOY_KERNEL_DEB:-}"
if [[ -n "$deb" ]]; then
    [[ -f "$deb" ]] || die "NETDEPLOY_KERNEL_DEB=$deb does not exist"
else
    command -v apt-get >/dev/null 2>&1 || die "missing command 'apt-get'"
    pkg="${NETDEPLOY_KERNEL_PACKAGE:-}"
    if [[ -z "$pkg" ]]; then
        pkg="$(resolve_kernel_package)"
        if [[ -z "$pkg" ]]; then
            apt_update || true
            pkg="$(resolve_kernel_package)"
        fi
        [[ -n "$pkg" ]] || die "cannot resolve the kernel package behind linux-image-amd64 (apt-cache depends linux-image-amd64)"
    fi
    log "kernel package: $pkg"
    mkdir -p "$work/deb"
    apt_opts=(-q)
    # _apt cannot write into our private temp dir; download as the caller.
    [[ "$(id -u)" -ne 0 ]] || apt_opts+=(-o APT::Sandbox::User=root)
    if ! (cd "$work/deb" && apt-get "${apt_opts[@]}" download "$pkg" >&2); then
        apt_update || die "apt-get download $pkg failed"
        (cd "$work/deb" && apt-get "${apt_opts[@]}" download "$pkg" >&2) ||
            die "apt-get download $pkg failed"
    fi
    deb="$(find "$work/deb" -maxdepth 1 -name '*.deb' | head -n 1)"
    [[ -n "$deb" ]] || die "apt-get download $pkg produced no .deb"
fi

log "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$work/pkg"

mapfile -t kernels < <(find "$work/pkg/boot" -maxdepth 1 -name 'vmlinuz-*' | sort)
((${#kernels[@]} == 1)) || die "expected one vmlinuz-* in $(basename "$deb"), found ${#kernels[@]}"
kver="$(basename "${kernels[0]}")"
kver="${kver#vmlinuz-}"
moddir="$work/pkg/lib/modules/$kver"
[[ -d "$moddir" ]] || die "no /lib/modules/$kver in $(basename "$deb")"
log "kernel version: $kver"

# Debian generates modules.dep in postinst; do it here.
if [[ ! -s "$moddir/modules.dep" ]]; then
    if command -v depmod >/dev/null 2>&1; then
        depmod -b "$work/pkg" "$kver"
    else
        "$BUSYBOX" depmod -b "$work/pkg" "$kver"
    fi
fi
[[ -s "$moddir/modules.dep" ]] || die "depmod produced no modules.dep"

# --- module resolution -----------------------------------------------------
declare -A mod_path=()  # normalized name -> path relative to $moddir
declare -A mod_deps=()  # normalized name -> space separated normalized names
declare -A builtin=()   # normalized name -> 1
declare -A visited=()
load_order=()

norm() {
    local n="${1##*/}"
    n="${n%%.ko*}"
    printf '%s' "${n//-/_}"
}

while IFS= read -r line; do
    [[ -n "$line" ]] || continue
    m="${line%%:*}"
    deps="${line#*:}"
    n="$(norm "$m")"
    mod_path[$n]="$m"
    dl=""
    for d in $deps; do
        dl+="$(norm "$d") "
    done
    mod_deps[$n]="$dl"
done <"$moddir/modules.dep"

if [[ -f "$moddir/modules.builtin" ]]; then
    while IFS= read -r line; do
        [[ -n "$line" ]] && builtin[$(norm "$line")]=1
    done <"$moddir/modules.builtin"
fi

add_module() {
    local n="$1" d
    [[ -z "${visited[$n]:-}" ]] || return 0
    visited[$n]=1
    for d in ${mod_deps[$n]}; do
        add_module "$d"
    done
    load_order+=("$n")
}

for m in "${REQUIRED_MODULES[@]}" "${OPTIONAL_MODULES[@]}"; do
    n="$(norm "$m")"
    if [[ -n "${builtin[$n]:-}" ]]; then
        log "module $m is built into the kernel"
        continue
    fi
    if [[ -z "${mod_path[$n]:-}" ]]; then
        if [[ " ${REQUIRED_MODULES[*]} " == *" $m "* ]]; then
            die "required module $m is neither built in nor in modules.dep of $kver"
        fi
        log "optional module $m not available in $kver, skipped"
        continue
    fi
    add_module "$n"
done

# --- initramfs tree --------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,dev,etc,proc,sys,run,tmp,root,var,mnt,"lib/modules/$kver"}
ln -s bin "$root/sbin"
mkdir -p "$root/usr"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
chmod 1777 "$root/tmp"

cp "$BUSYBOX" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
while IFS= read -r applet; do
    [[ -n "$applet" && "$applet" != busybox ]] || continue
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
done < <("$BUSYBOX" --list)
[[ -e "$root/bin/sh" ]] || die "busybox has no sh applet"

: >"$root/etc/netdeploy-modules"
for n in "${load_order[@]}"; do
    src="$moddir/${mod_path[$n]}"
    base="$(basename "${mod_path[$n]}")"
    case "$base" in
    *.ko) cp "$src" "$root/lib/modules/$kver/$base" ;;
    *.ko.xz) xz -dc "$src" >"$root/lib/modules/$kver/${base%.xz}" ;;
    *.ko.zst) zstd -q -dc "$src" >"$root/lib/modules/$kver/${base%.zst}" ;;
    *.ko.gz) gzip -dc "$src" >"$root/lib/modules/$kver/${base%.gz}" ;;
    *) die "unsupported module file $base" ;;
    esac
    base="${base%.xz}"
    base="${base%.zst}"
    base="${base%.gz}"
    printf '%s\n' "$base" >>"$root/etc/netdeploy-modules"
done
log "modules (load order): $(tr '\n' ' ' <"$root/etc/netdeploy-modules")"

# The initramfs has no libc of its own: each program below comes with the shared
# libraries and the loader that ldd lists, from this host's packages.
copy_with_libs() { # PATH: installs it as /bin/<its name>, replacing a busybox applet
    local lib
    rm -f "$root/bin/$(basename "$1")"
    install -m 0755 "$1" "$root/bin/$(basename "$1")"
    while IFS= read -r lib; do
        [[ -e "$root$lib" ]] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done < <(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# The disk tools replace busybox's applets of the same name (busybox's mkswap and
# blockdev would do, but one set of tools is simpler to reason about).
for t in "${DISK_TOOLS[@]}"; do
    copy_with_libs "${disk_tool[$t]}"
done
log "disk tools: ${DISK_TOOLS[*]} ($(du -ck "$root/bin/sfdisk" "$root/bin/partx" "$root/bin/blockdev" \
    "$root/bin/mkfs.vfat" "$root/bin/mkfs.ext4" "$root/bin/mkswap" "$root/bin/e2fsck" \
    "$root/bin/resize2fs" | tail -n 1 | cut -f1) KiB, libraries \
    $(du -sk "$root/lib/x86_64-linux-gnu" 2>/dev/null | cut -f1) KiB)"

# capture_image maps a filesystem's used blocks with partclone, as FOG and Clonezilla do
# (docs/image-format.md).
for p in partclone.extfs partclone.fat partclone.ntfs; do
    bin="$(PATH="$PATH:/usr/sbin:/sbin" command -v "$p")" || die "missing $p (apt-get install partclone)"
    copy_with_libs "$bin"
done
log "partclone: $(du -sk "$root/bin/partclone."* "$root/lib/x86_64-linux-gnu" "$root/lib64" 2>/dev/null |
    awk '{ k += $1 } END { print k " KiB with its libraries" }')"

install -m 0755 "$SRC_DIR/init" "$root/init"
install -m 0755 "$AGENT_BIN" "$root/bin/netdeploy-agent"
mkdir -p "$root/etc/netdeploy" "$root/var/lib/netdeploy"
install -m 0755 "$SRC_DIR/udhcpc.script" "$root/etc/udhcpc.script"
mkdir -p "$root/usr/share/udhcpc"
ln -s ../../../etc/udhcpc.script "$root/usr/share/udhcpc/default.script" 2>/dev/null || true
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
{
    printf 'netdeploy-test-initrd %s\n' "$INITRD_VERSION"
    printf 'kernel=%s\n' "$kver"
    printf 'agent=%s\n' "$("$AGENT_BIN" --version)"
    printf 'kernel-package=%s\n' "$(dpkg-deb -f "$deb" Package)_$(dpkg-deb -f "$deb" Version)"
    printf 'built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$root/etc/netdeploy-initrd-version"

# newc entry for /dev/console written by hand, so no root (mknod) is needed.
# Fields: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
# rdevminor namesize check.
cpio_entry() { # NAME MODE RDEVMAJOR RDEVMINOR
    local name="$1" mode="$2" rmaj="$3" rmin="$4" namesize hdr pad
    namesize=$((${#name} + 1))
    hdr="$(printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 "$mode" 0 0 1 0 0 0 0 "$rmaj" "$rmin" "$namesize" 0)"
    printf '%s%s\0' "$hdr" "$name"
    pad=$(((4 - (110 + namesize) % 4) % 4))
    if ((pad > 0)); then
        head -c "$pad" /dev/zero
    fi
}

log "writing initramfs"
{
    cpio_entry dev $((8#040755)) 0 0
    cpio_entry dev/console $((8#020600)) 5 1
    cpio_entry TRAILER!!! 0 0 0
    head -c 512 /dev/zero # keep the next archive aligned, like real cpio does
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
        cpio --quiet -o -H newc -R 0:0)
} | gzip -9n >"$work/initrd.img"

cp "${kernels[0]}" "$work/vmlinuz"
printf '%s\n' "$kver" >"$work/kernel-version"
mv -f "$work/vmlinuz" "$out_dir/vmlinuz"
mv -f "$work/initrd.img" "$out_dir/initrd.img"
mv -f "$work/kernel-version" "$out_dir/kernel-version"
log "done: $out_dir/vmlinuz ($kver), $out_dir/initrd.img ($(du -k "$out_dir/initrd.img" | cut -f1) KiB)"
