#!/usr/bin/env bash
# make test-arm64: the device side on an emulated Raspberry Pi OS (Debian 12 bookworm arm64, QEMU
# user mode), installed from the board's pinned requirement file, compared with x86:
#   under QEMU_CPU=cortex-a72 (Pi 4) and cortex-a76 (Pi 5):
#     - the torch-free device test subset (ARM64_TESTS), including the package self-test;
#     - ONNX Runtime int8 replay of a lossless FFV1 belt video: events.jsonl byte-identical to x86;
#     - ONNX Runtime int8 replay of the MP4 it was made from: no verdict flips (the aarch64 decoder
#       differs, so scores move);
#     - LiteRT int8 (the Pi image's backend) replay of the FFV1 video: byte-identical to x86, or
#       refused at load by the package self-test (reported as a WARNING; see litert_check).
#   and the LiteRT check again under QEMU_CPU=max (advertises SME).
# Skips (exit 0, one sentence) without root or binfmt_misc. Timings go to stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/arm64/rootfs.sh

PY=${ARM64_PY:-.venv/bin/python}
ARM64_CPUS=${ARM64_CPUS:-"cortex-a72 cortex-a76"}
ARM64_TESTS="tests/device/test_selftest.py tests/device/test_manifest.py tests/device/test_preprocess.py tests/device/test_events.py"
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
mkdir -p "$R/work/wheel" "$R/work/tests/device"
cp "$WORK"/wheel/parcelguard-*.whl "$R/work/wheel/"
cp tests/conftest.py "$R/work/tests/"
cp $ARM64_TESTS "$R/work/tests/device/"  # the doubles come from the wheel (parcelguard.device.testing)
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

replay_arm() {  # $1 cpu, $2 backend, $3 video, $4 out dir (under /work)
    in_arm "$1" "parcelguard replay $3 --model package --backend $2 --labels video/gt.csv --out $4 >$4.log 2>&1"
}

# LiteRT (the Pi's backend): its events must equal x86's, or the package self-test must refuse it.
# Under QEMU 7.2 its XNNPACK int8 kernels answered ~0.93 for every crop (cortex-a72, a76 and max):
# the self-test refuses, and that is reported, not failed; a package that loads and then differs is.
litert_check() {  # $1 cpu
    local out=arm_$1_litert_ffv1
    if replay_arm "$1" litert video/belt_ffv1.avi "$out"; then
        if cmp -s "$R/work/x86_litert_ffv1/events.jsonl" "$R/work/$out/events.jsonl"; then
            echo "litert ffv1 replay: events.jsonl byte-identical to x86"
        else
            echo "FAIL: litert on $1 passed its self-test but its events differ from x86 (the self-test missed it)"
            fail=1
        fi
    elif grep -q "failed its self-test" "$R/work/$out.log"; then
        echo "WARNING: litert on $1 refused at load by the package self-test: $(grep -o 'crop .*(difference [^)]*)' "$R/work/$out.log" | head -1)"
    else
        echo "FAIL: litert replay on $1 failed for another reason:"
        tail -3 "$R/work/$out.log"
        fail=1
    fi
}

fail=0
for cpu in $ARM64_CPUS; do
    t=$(date +%s)
    echo "== QEMU_CPU=$cpu"
    # the correct-answer case for litert is litert_check's job below (it is refused under QEMU 7.2)
    in_arm "$cpu" "python -m pytest -q -p no:cacheprovider -m '$MARKERS' -k 'not (correct_package_loads and litert)' $ARM64_TESTS" || fail=1
    out=arm_${cpu}_onnx_int8_ffv1
    replay_arm "$cpu" onnx_int8 video/belt_ffv1.avi "$out" || { fail=1; cat "$R/work/$out.log"; }
    if cmp -s "$R/work/x86_onnx_int8_ffv1/events.jsonl" "$R/work/$out/events.jsonl"; then
        echo "onnx_int8 ffv1 replay: events.jsonl byte-identical to x86 ($(wc -l <"$R/work/$out/events.jsonl") events)"
    else
        echo "FAIL: onnx_int8 ffv1 replay on $cpu: events.jsonl differs from x86"
        fail=1
    fi
    out=arm_${cpu}_onnx_int8_mp4
    replay_arm "$cpu" onnx_int8 video/video.mp4 "$out" || { fail=1; cat "$R/work/$out.log"; }
    "$PY" tools/arm64/flips.py "$R/work/x86_onnx_int8_mp4/events.jsonl" "$R/work/$out/events.jsonl" || fail=1
    litert_check "$cpu"
    echo "QEMU_CPU=$cpu took $(($(date +%s) - t)) s"
done

# QEMU's default CPU model (advertises SME): LiteRT int8 answered 1.0 for every crop in a trial.
echo "== QEMU_CPU=max"
litert_check max

echo "test-arm64: rootfs ${T_ROOTFS} s, x86 side $((T_X86 - T_ROOTFS)) s, total $(($(date +%s) - T0)) s"
if [ $fail -ne 0 ]; then
    echo "test-arm64: FAILED"
    exit 1
fi
echo "test-arm64: passed"
