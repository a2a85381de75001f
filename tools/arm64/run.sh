#!/usr/bin/env bash
# make test-arm64: the device side on an emulated Raspberry Pi OS (Debian 12 bookworm arm64, QEMU
# user mode), installed from the board's pinned requirement file, compared with x86:
#   under QEMU_CPU=cortex-a72 (Pi 4) and cortex-a76 (Pi 5):
#     - the torch-free device test subset (ARM64_TESTS), including the package self-test;
#     - a replay of a lossless FFV1 belt video: events.jsonl byte-identical to the x86 replay;
#     - a replay of the MP4 it was made from: no verdict flips (the aarch64 decoder differs).
#   under QEMU_CPU=max (advertises SME): reported, and the self-test must not let a wrong runtime
#   through (either the package is refused at load or its events equal x86's).
# Skips (exit 0, one sentence) without root or binfmt_misc. Timings go to stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/arm64/rootfs.sh

PY=${ARM64_PY:-.venv/bin/python}
ARM64_CPUS=${ARM64_CPUS:-"cortex-a72 cortex-a76"}
ARM64_TESTS="tests/test_selftest.py tests/test_manifest.py tests/test_preprocess.py tests/test_events.py"
MARKERS="not slow and not export and not network and not hardware and not gpu"

arm64_host_ready || exit 0
T0=$(date +%s)
WORK=$(mktemp -d /var/tmp/parcelguard-arm64.XXXXXX)
cleanup() {
    arm64_umount
    if [ -z "${ARM64_KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

arm64_rootfs "$WORK"
R=$ARM64_ROOT
T_ROOTFS=$(($(date +%s) - T0))

# x86 side: package, videos, x86 replays (into the rootfs, where the arm side reads them)
"$PY" tools/arm64/prepare.py "$R/work" --cache "$ARM64_CACHE"
"$PY" -m pip wheel --no-deps -q -w "$WORK/wheel" .
mkdir -p "$R/work/wheel" "$R/work/tests"
cp "$WORK"/wheel/parcelguard-*.whl "$R/work/wheel/"
cp tests/conftest.py tests/helpers_device.py $ARM64_TESTS "$R/work/tests/"
cp pyproject.toml "$R/work/"  # pytest reads its markers
T_X86=$(($(date +%s) - T0))

arm64_mount "$R"
in_arm() {  # $1: QEMU_CPU; the rest: a shell command run in /work inside the rootfs
    local cpu=$1
    shift
    arm64_cpuinfo "$cpu" >"$R/.cpuinfo" # same inode: the bind mount over /proc/cpuinfo follows
    QEMU_CPU=$cpu chroot "$R" /usr/bin/env -i PATH=/venv/bin:/usr/bin:/bin HOME=/root \
        PARCELGUARD_TEST_PACKAGE=/work/package /bin/sh -c "cd /work && $*"
}
in_arm cortex-a72 "pip install --quiet --no-deps --no-index wheel/parcelguard-*.whl && pip check"

replay_arm() {  # $1 cpu, $2 video, $3 out dir (under /work)
    in_arm "$1" "parcelguard replay $2 --model package --backend litert --labels video/gt.csv --out $3 >$3.log 2>&1"
}

fail=0
for cpu in $ARM64_CPUS; do
    t=$(date +%s)
    echo "== QEMU_CPU=$cpu"
    in_arm "$cpu" "python -m pytest -q -p no:cacheprovider -m '$MARKERS' $ARM64_TESTS" || fail=1
    replay_arm "$cpu" video/belt_ffv1.avi "arm_${cpu}_ffv1" || { fail=1; cat "$R/work/arm_${cpu}_ffv1.log"; }
    if cmp -s "$R/work/x86_ffv1/events.jsonl" "$R/work/arm_${cpu}_ffv1/events.jsonl"; then
        echo "ffv1 replay: events.jsonl byte-identical to x86 ($(wc -l <"$R/work/x86_ffv1/events.jsonl") events)"
    else
        echo "FAIL: ffv1 replay on $cpu: events.jsonl differs from x86"
        fail=1
    fi
    replay_arm "$cpu" video/video.mp4 "arm_${cpu}_mp4" || { fail=1; cat "$R/work/arm_${cpu}_mp4.log"; }
    "$PY" tools/arm64/flips.py "$R/work/x86_mp4/events.jsonl" "$R/work/arm_${cpu}_mp4/events.jsonl" || fail=1
    echo "QEMU_CPU=$cpu took $(($(date +%s) - t)) s"
done

# QEMU's default CPU model: LiteRT int8 answered 1.0 for every crop under QEMU 7.2 (RESEARCH.md).
echo "== QEMU_CPU=max (reported; the self-test must refuse a runtime that answers wrongly)"
if replay_arm max video/belt_ffv1.avi arm_max_ffv1; then
    if cmp -s "$R/work/x86_ffv1/events.jsonl" "$R/work/arm_max_ffv1/events.jsonl"; then
        echo "QEMU_CPU=max: LiteRT answers correctly here (self-test passed, events identical to x86)"
    else
        echo "FAIL: QEMU_CPU=max: the package loaded but its events differ from x86 (the self-test missed it)"
        fail=1
    fi
elif grep -q "failed its self-test" "$R/work/arm_max_ffv1.log"; then
    echo "QEMU_CPU=max: refused at load by the self-test: $(grep -o 'model package.*' "$R/work/arm_max_ffv1.log" | head -1)"
else
    echo "FAIL: QEMU_CPU=max: replay failed for another reason:"
    tail -3 "$R/work/arm_max_ffv1.log"
    fail=1
fi

echo "test-arm64: rootfs ${T_ROOTFS} s, x86 side $((T_X86 - T_ROOTFS)) s, total $(($(date +%s) - T0)) s"
if [ $fail -ne 0 ]; then
    echo "test-arm64: FAILED"
    exit 1
fi
echo "test-arm64: passed"
