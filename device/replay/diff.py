"""The golden check of a replay: its events against a golden events file (regression), in the
difference rows of :mod:`parcelguard.device.inspection.compare`; a decoder change is told apart
from a model change by the decoded-frame hash.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.compare import compare_events

log = logging.getLogger(__name__)


MAX_GOLDEN_BYTES = 64 << 20
# field -> accepted types of a package event the comparison reads
_GOLDEN_FIELDS = {
    "verdict": (str,),
    "package_seq": (int,),
    "t_center": (int, float),
    "frame_enter": (int,),
    "frame_exit": (int,),
}


def _golden_event(obj: object, path: Path, line_no: int) -> dict[str, Any] | None:
    """A package event of a golden file (None for other kinds); anything malformed is one sentence."""
    where = f"golden events file {path}, line {line_no}"
    if not isinstance(obj, dict):
        raise ParcelguardError(f"{where} is a JSON {type(obj).__name__}, not an event object")
    if obj.get("kind", "package") != "package":
        return None
    for name, types in _GOLDEN_FIELDS.items():
        v = obj.get(name)
        if isinstance(v, bool) or not isinstance(v, types):
            raise ParcelguardError(f"{where}: {name} is missing or not a {types[0].__name__}")
    score = obj.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise ParcelguardError(f"{where}: score is not a number or null")
    if not math.isfinite(obj["t_center"]) or (score is not None and not math.isfinite(score)):
        raise ParcelguardError(f"{where}: t_center and score must be finite numbers")
    return obj


def load_golden(path: Path) -> list[dict[str, Any]]:
    """The package events of a golden ``events.jsonl``; a malformed file is one sentence."""
    path = Path(path)
    if not path.is_file():
        raise ParcelguardError(f"golden events file {path} does not exist")
    if path.stat().st_size > MAX_GOLDEN_BYTES:
        raise ParcelguardError(
            f"golden events file {path} is larger than {MAX_GOLDEN_BYTES >> 20} MB"
        )
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:
                why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                raise ParcelguardError(
                    f"golden events file {path}, line {line_no} is not JSON ({why})"
                ) from None
            ev = _golden_event(obj, path, line_no)
            if ev is not None:
                out.append(ev)
    return out


# A golden replayed through another decoder (another OpenCV build, another CPU architecture: an MP4
# decoded on aarch64 differs from x86 on every frame by up to 3 levels) moved scores by up to 0.02
# on a 40-package video (../shared/RESEARCH.md); 0.05 is that with a margin. Verdicts stay exact.
DECODE_CHANGE_TOLERANCE = 0.05


def decode_record_path(events_path: Path) -> Path:
    """Where the decoded-frame record of an events file lives: ``X.jsonl`` -> ``X.decode.json``."""
    return Path(events_path).with_name(Path(events_path).stem + ".decode.json")


def golden_check(
    golden: Path,
    golden_events: list[dict[str, Any]],
    events: list[dict[str, Any]],
    decode: dict[str, Any] | None,
    tolerance: float,
) -> dict[str, Any]:
    """Compare with a golden; the score tolerance widens only when the decoded frames differ.

    The golden's replay recorded a hash of every decoded frame beside it (``decode_record_path``).
    Same hash: the model saw the same pixels, so scores must agree within ``tolerance``. Another
    hash: the decoder changed, so verdicts must still agree exactly but scores may move by
    :data:`DECODE_CHANGE_TOLERANCE`. No record (an older golden): ``tolerance``, as before.
    """
    rec_path = decode_record_path(golden)
    rec = None
    if rec_path.is_file():
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
            rec = {"frames": int(rec["frames"]), "sha256": str(rec["sha256"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ParcelguardError(f"{rec_path} is not a decode record ({exc})") from None
    if rec is None or decode is None:
        frames = "unknown"
    else:
        same = rec["sha256"] == decode["sha256"] and rec["frames"] == decode["frames"]
        frames = "same" if same else "differ"
    tol = max(tolerance, DECODE_CHANGE_TOLERANCE) if frames == "differ" else tolerance
    diffs = compare_events(golden_events, events, tol)
    return {
        "file": str(golden),
        "decoded_frames": frames,
        "score_tolerance": tol,
        "differences": diffs,
        "passed": not diffs,
    }
