"""Verdict flips between two replays of one video (x86 vs arm64): exit 1 on any, else 0.

Scores may move (the aarch64 MP4 decoder differs from x86 by a few levels); verdicts, and the set
of packages seen, must not.
"""

from __future__ import annotations

import sys

from parcelguard.device.inspection.compare import compare_events, score_deltas
from parcelguard.device.inspection.events import read_events


def main() -> int:
    a, b = read_events(sys.argv[1]), read_events(sys.argv[2])
    diffs = compare_events(a, b, tolerance=1.0)  # 1.0: only verdict changes and unpaired packages
    d = score_deltas(a, b)
    print(
        f"mp4 replay: {d['paired']} packages paired, {len(diffs)} verdict flips or unpaired, "
        f"score max |delta| {d['max_abs']:.4f} (mean {d['mean_abs']:.4f})"
    )
    for row in diffs:
        print(f"  {row}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
