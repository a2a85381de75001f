#!/usr/bin/env bash
# Build (or reuse) a cached Debian 12 bookworm arm64 root filesystem with a venv holding the board's
# pinned device requirements (docker/requirements-pi.txt, the file the Pi Dockerfile installs).
# Sourced by tools/arm64/run.sh; defines arm64_host_ready, arm64_rootfs, arm64_mount, arm64_umount.
# Pitfalls measured here: ../shared/RESEARCH.md "arm64 under emulation".

ARM64_SUITE=bookworm
ARM64_CACHE="${PARCELGUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parcelguard}"
ARM64_REQS="docker/requirements-pi.txt"
# Not part of the Pi image: pytest for the device test subset, and ONNX Runtime (the workstation's
# version) because LiteRT's XNNPACK int8 answers wrongly under QEMU 7.2 (docs/deploy.md), so the
# byte-identical replay check runs on ONNX Runtime int8.
ARM64_TEST_REQS="pytest==9.2.0 onnxruntime==1.32.0"
# Bump when the recipe below changes: the cache key covers it and the pinned requirements.
ARM64_RECIPE=1

# Prints the reason and returns 1 when this machine cannot run arm64 binaries under QEMU.
arm64_host_ready() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "skipped: make test-arm64 needs root (chroot, mounts, binfmt_misc registration); run it as root or in CI"
        return 1
    fi
    if [ ! -d /proc/sys/fs/binfmt_misc ]; then
        echo "skipped: this kernel has no binfmt_misc (/proc/sys/fs/binfmt_misc), so arm64 binaries cannot run under QEMU here"
        return 1
    fi
    local need=()
    command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    if [ ${#need[@]} -gt 0 ]; then
        echo "installing ${need[*]} (apt)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    if [ ! -f /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || {
            echo "skipped: binfmt_misc cannot be mounted here (a container without the privilege?), so arm64 binaries cannot run under QEMU"
            return 1
        }
    fi
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    if [ ! -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || ! grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        echo "skipped: qemu-aarch64 is not registered with binfmt_misc (update-binfmts --enable qemu-aarch64 failed)"
        return 1
    fi
}

arm64_key() {
    { cat "$ARM64_REQS"; echo "$ARM64_TEST_REQS $ARM64_SUITE $ARM64_RECIPE"; } | sha256sum | cut -c1-16
}

# A small arm64 /proc/cpuinfo: QEMU 7.2 shows the host's x86 one, and the cpuinfo library inside
# LiteRT and ONNX Runtime segfaults on it. $1: QEMU_CPU name.
arm64_cpuinfo() {
    local part=0xd08
    case "$1" in cortex-a76) part=0xd0b ;; cortex-a53) part=0xd03 ;; cortex-a57) part=0xd07 ;; esac
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid asimdhp asimddp\n' "$i"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$part"
    done
}

ARM64_MOUNTED=()
arm64_mount() {  # $1: rootfs
    local r=$1
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    mount -t proc proc "$r/proc" && ARM64_MOUNTED+=("$r/proc")
    mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys" && ARM64_MOUNTED+=("$r/sys")
    mount --bind /dev "$r/dev" && ARM64_MOUNTED+=("$r/dev")
    mount --bind /dev/pts "$r/dev/pts" && ARM64_MOUNTED+=("$r/dev/pts")
    arm64_cpuinfo cortex-a72 > "$r/.cpuinfo"
    mount --bind "$r/.cpuinfo" "$r/proc/cpuinfo" && ARM64_MOUNTED+=("$r/proc/cpuinfo")
}

arm64_umount() {
    local i
    for ((i = ${#ARM64_MOUNTED[@]} - 1; i >= 0; i--)); do
        umount -l "${ARM64_MOUNTED[$i]}" 2>/dev/null || true
    done
    ARM64_MOUNTED=()
}

# Sets ARM64_ROOT to a fresh rootfs under $1 (extracted from the cache, or built and cached).
arm64_rootfs() {
    local work=$1 key tarball t0
    key=$(arm64_key)
    tarball="$ARM64_CACHE/arm64-$ARM64_SUITE-$key.tar.gz"
    ARM64_ROOT="$work/rootfs"
    mkdir -p "$ARM64_ROOT" "$ARM64_CACHE"
    t0=$(date +%s)
    if [ -f "$tarball" ]; then
        echo "arm64 rootfs: reusing $tarball"
        tar -xzf "$tarball" -C "$ARM64_ROOT"
        echo "arm64 rootfs: extracted in $(( $(date +%s) - t0 )) s"
        return 0
    fi
    echo "arm64 rootfs: building $ARM64_SUITE (debootstrap, emulated second stage; several minutes)"
    local log="$work/debootstrap.log"
    if ! debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        "$ARM64_SUITE" "$ARM64_ROOT" "${PARCELGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$log" 2>&1 ||
        ! chroot "$ARM64_ROOT" /debootstrap/debootstrap --second-stage >>"$log" 2>&1; then
        tail -5 "$log"
        echo "arm64 rootfs: debootstrap failed (log: $log)"
        return 1
    fi
    echo "arm64 rootfs: debootstrap done after $(( $(date +%s) - t0 )) s"
    # Extra CA certificates the host trusts (a TLS-inspecting proxy): pip inside needs them too.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$ARM64_ROOT/usr/local/share/ca-certificates/"
    fi
    cp "$ARM64_REQS" "$ARM64_ROOT/requirements-pi.txt"
    arm64_mount "$ARM64_ROOT"
    local rc=0
    QEMU_CPU=cortex-a72 chroot "$ARM64_ROOT" /bin/sh -ec "
        update-ca-certificates >/dev/null 2>&1
        export PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=
        python3 -m venv /venv
        /venv/bin/pip install --quiet --only-binary=:all: -r /requirements-pi.txt $ARM64_TEST_REQS
        /venv/bin/python -c 'import cv2, numpy, ai_edge_litert.interpreter; print(\"arm64 venv: opencv\", cv2.__version__, \"numpy\", numpy.__version__)'
    " || rc=$?
    arm64_umount
    if [ $rc -ne 0 ]; then
        echo "arm64 rootfs: installing $ARM64_REQS in the emulated venv failed (exit $rc)"
        return $rc
    fi
    rm -f "$ARM64_ROOT/.cpuinfo"
    echo "arm64 rootfs: built in $(( $(date +%s) - t0 )) s; caching it"
    tar -C "$ARM64_ROOT" -cf - . | gzip -1 > "$tarball.tmp" && mv "$tarball.tmp" "$tarball"
    echo "arm64 rootfs: cached $tarball ($(du -m "$tarball" | cut -f1) MB) after $(( $(date +%s) - t0 )) s"
}
