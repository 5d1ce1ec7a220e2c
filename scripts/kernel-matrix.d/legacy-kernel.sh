#!/usr/bin/env bash
# Builds the kernel matrix's "legacy profile" kernel (scripts/kernel-matrix, kernel id
# legacy-6.1): Debian's linux-source-6.1 with a minimal config, what kernels before 4.18 lack
# turned off (no CONFIG_BPF_SYSCALL, so no ring buffer and no BTF; no DEBUG_INFO_BTF), and
# what the matrix guest needs turned on. Cached by source version and config hash:
#
#   legacy-kernel.sh CACHE_DIR   -> prints the bzImage path (built once, then reused)
#
# Runs under nice; the cold build time is in the README.
set -euo pipefail
CACHE=$1
SRC_TAR=/usr/src/linux-source-6.1.tar.xz
[ -r "$SRC_TAR" ] || { echo "legacy-kernel: $SRC_TAR missing (apt-get install linux-source-6.1)" >&2; exit 1; }
VER="$(dpkg-query -W -f '${Version}' linux-source-6.1)"

# On top of tinyconfig. Each line: y or n for CONFIG_<name>.
OPTIONS="
64BIT=y
PRINTK=y BUG=y TTY=y SERIAL_8250=y SERIAL_8250_CONSOLE=y EARLY_PRINTK=y
BLK_DEV_INITRD=y RD_GZIP=n RD_BZIP2=n RD_LZMA=n RD_XZ=n RD_LZO=n RD_LZ4=n RD_ZSTD=n
BINFMT_ELF=y BINFMT_SCRIPT=y
PROC_FS=y PROC_SYSCTL=y SYSFS=y DEVTMPFS=y TMPFS=y SHMEM=y
MULTIUSER=y FUTEX=y EPOLL=y EVENTFD=y SIGNALFD=y TIMERFD=y POSIX_TIMERS=y FILE_LOCKING=y
HIGH_RES_TIMERS=y SYSVIPC=y
NET=y INET=y UNIX=y PACKET=y IPV6=n
AUDIT=y AUDITSYSCALL=y
FSNOTIFY=y INOTIFY_USER=y FANOTIFY=y EXPORTFS=y
CONNECTOR=y PROC_EVENTS=y
SECCOMP=y SECCOMP_FILTER=y
PCI=y ACPI=y
BPF_SYSCALL=n DEBUG_INFO=n DEBUG_INFO_BTF=n KALLSYMS=n MODULES=n
"
HASH="$(printf '%s\n%s\n' "$VER" "$OPTIONS" | sha256sum | cut -c1-12)"
OUT="$CACHE/kernels/legacy-6.1_${VER}_$HASH"
if [ -s "$OUT/bzImage" ]; then
  echo "$OUT/bzImage"
  exit 0
fi
BUILD="$CACHE/build/legacy-6.1"
rm -rf "$BUILD"
mkdir -p "$BUILD" "$OUT"
start=$SECONDS
tar -xJf "$SRC_TAR" -C "$BUILD" --strip-components=1
cd "$BUILD"
make -s tinyconfig >/dev/null
for o in $OPTIONS; do
  n=${o%%=*}; v=${o#*=}
  if [ "$v" = y ]; then scripts/config --enable "$n"; else scripts/config --disable "$n"; fi
done
make -s olddefconfig >/dev/null
# What must hold after olddefconfig resolved dependencies.
for want in CONFIG_AUDITSYSCALL=y CONFIG_FANOTIFY=y CONFIG_PROC_EVENTS=y CONFIG_SECCOMP_FILTER=y \
            CONFIG_SERIAL_8250_CONSOLE=y CONFIG_BLK_DEV_INITRD=y CONFIG_ACPI=y; do
  grep -qx "$want" .config || { echo "legacy-kernel: $want did not stick" >&2; exit 1; }
done
for gone in CONFIG_BPF_SYSCALL CONFIG_DEBUG_INFO_BTF; do
  ! grep -q "^$gone=y" .config || { echo "legacy-kernel: $gone is on" >&2; exit 1; }
done
make -s -j"$(nproc)" bzImage >"$OUT/build.log" 2>&1 || { tail -n 30 "$OUT/build.log" >&2; exit 1; }
cp arch/x86/boot/bzImage "$OUT/bzImage.tmp"
cp .config "$OUT/config"
mv "$OUT/bzImage.tmp" "$OUT/bzImage"
echo "built in $((SECONDS - start))s" >"$OUT/build-time"
cd /
rm -rf "$BUILD"
echo "$OUT/bzImage"
