"""Commissioning: learn the belt of one camera and propose its presence settings.

From a stretch of video (ideally an empty belt; a running belt with packages on it works while
each ROI pixel sees belt in more than half the frames) :func:`commission`

1. detects the belt direction by phase correlation of consecutive ROI frames (the belt's own
   texture and the packages move; rails and frame edges outside the ROI do not matter),
2. learns a :class:`~parcelguard.device.inspection.presence.BeltModel` on the ROI seen in belt
   order (per-pixel median and robust spread),
3. proposes ``min_diff`` from the belt's noise and a brightness ``threshold`` (with a warning
   when the belt is too bright for the brightness rule), and counts the learning frames in which
   the proposed settings see a package (on an empty belt that should be none),
4. checks that the frames saw a whole belt revolution (:mod:`~parcelguard.device.inspection.
   revolution`): a moving belt that did not repeat in them gets a note saying what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np
from parcelguard.device.config.device import DeviceConfig
from parcelguard.device.contract.preprocess import crop_roi
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.presence import BackgroundPresence, BeltModel, belt_view, shrink
from parcelguard.device.inspection.revolution import (
    find_revolution,
    revolution_note,
    revolution_summary,
)

DIRECTION_FRAMES = 30  # consecutive frames whose shifts decide the direction
BLUR_SIGMA = 4.0  # px, before phase correlation
MIN_MOTION_PX = 0.5
MIN_RESPONSE = 0.08  # median phase-correlation peak; noise alone gives ~0.0-0.05
MIN_AGREE = 0.6
BACKGROUND_MERGE_GAP = 0.05  # ROI widths; the synthetic gaps between packages are >= 0.1  # fraction of frame pairs whose shift must agree with the median  # median shift per frame below this: the belt did not move


@dataclass
class Commissioning:
    model: BeltModel
    direction: str
    detected: str | None  # None: the belt did not move visibly (direction from the config)
    shift_px: tuple[float, float]  # median (dx, dy) per frame in the camera's ROI
    frames: int
    min_diff: float
    merge_gap: float  # a background mask has holes where the package matches the belt
    brightness_threshold: int
    frames_with_package: float  # fraction of learning frames the proposal sees a package in
    notes: list[str] = field(default_factory=list)
    belt_travel_px: float = 0.0  # ROI px of belt that passed while learning (0: still belt)
    revolution_px: float | None = None  # the belt repeats every revolution_px; None: not seen
    revolution: str = ""  # one line on the travel and the repeat ("" : the belt did not move)

    def snippet(self, model_path: str) -> str:
        """A YAML config snippet with the proposed settings."""
        bg = self.model
        return "\n".join(
            [
                "belt:",
                f"  direction: {self.direction}",
                "presence:",
                "  method: background",
                f"  stride: {bg.stride}",
                f"  threshold: {self.brightness_threshold}  # for method: brightness",
                "  background:",
                f"    model: {model_path}",
                f"    min_diff: {self.min_diff:g}",
                "  min_frames: 3  # a blob seen in fewer frames is not a package",
                f"  merge_gap: {self.merge_gap:g}  # bridges holes where a package matches the belt",
                "",
            ]
        )


def detect_direction(rois: list[np.ndarray]) -> tuple[str | None, tuple[float, float]]:
    """The belt direction from consecutive ROI crops: ``(direction or None, (dx, dy) per frame)``."""
    # Blurred: a woven belt's fine, periodic weave would alias (it moves more than half its
    # pitch per frame); the coarse texture and the packages do not.
    grays = [
        cv2.GaussianBlur(
            (cv2.cvtColor(r, cv2.COLOR_BGR2GRAY) if r.ndim == 3 else r).astype(np.float32),
            (0, 0),
            BLUR_SIGMA,
        )
        for r in rois
    ]
    if len(grays) < 2:
        return None, (0.0, 0.0)
    still = np.mean(grays, axis=0)  # what does not move (lighting, vignette) drops out
    grays = [g - still for g in grays]
    win = cv2.createHanningWindow(grays[0].shape[::-1], cv2.CV_32F)
    pairs = [cv2.phaseCorrelate(a, b, win) for a, b in zip(grays, grays[1:], strict=False)]
    arr = np.asarray([p[0] for p in pairs])
    response = float(np.median([p[1] for p in pairs]))
    dx, dy = (float(v) for v in np.median(arr, axis=0))
    tol = max(1.5, 0.25 * float(np.hypot(dx, dy)))
    agree = float(np.mean(np.hypot(arr[:, 0] - dx, arr[:, 1] - dy) <= tol))
    if max(abs(dx), abs(dy)) < MIN_MOTION_PX or agree < MIN_AGREE or response < MIN_RESPONSE:
        return None, (dx, dy)  # still, or the shifts disagree (noise, no texture)
    if abs(dx) >= abs(dy):
        return ("left_to_right" if dx > 0 else "right_to_left"), (dx, dy)
    return ("top_to_bottom" if dy > 0 else "bottom_to_top"), (dx, dy)


def commission(
    cfg: DeviceConfig,
    frames: Iterable[tuple[np.ndarray, float]],
    max_frames: int = 300,
    detect: bool = True,
    empty: bool = True,
) -> Commissioning:
    """Learn the belt from up to ``max_frames`` frames of ``frames`` under ``cfg``'s ROI.

    ``empty``: the frames show an empty belt (printed patterns and seams become belt); False:
    packages may pass (a running belt), the robust per-pixel median and MAD alone."""
    stride = cfg.presence.stride
    head: list[np.ndarray] = []
    times: list[float] = []
    it = iter(frames)
    for frame, ts in it:
        head.append(crop_roi(frame, cfg.roi).copy())
        times.append(ts)
        if len(head) >= min(DIRECTION_FRAMES, max_frames):
            break
    if len(head) < 3:
        raise ParcelguardError(
            f"commissioning needs at least 3 frames; the source gave {len(head)}"
        )
    detected, shift = detect_direction(head) if detect else (None, (0.0, 0.0))
    direction = detected or cfg.belt.direction
    small = [shrink(belt_view(r, direction), stride) for r in head]
    for frame, ts in it:
        if len(small) >= max_frames:
            break
        small.append(shrink(belt_view(crop_roi(frame, cfg.roi), direction), stride))
        times.append(ts)
    stack = np.stack(small)
    model = BeltModel.learn(stack, stride, direction, cfg.roi, empty=empty)
    result = _propose(cfg, model, stack, head, detected, shift)
    if detected is not None:  # a still belt (or a direction given) has no travel to judge
        _check_revolution(result, cfg, stack, times)
    return result


def _check_revolution(
    result: Commissioning, cfg: DeviceConfig, stack: np.ndarray, times: list[float]
) -> None:
    """Fill in the belt travel and revolution, and note a belt that did not repeat."""
    dx, dy = result.shift_px
    along = abs(dx) if result.direction in ("left_to_right", "right_to_left") else abs(dy)
    rev = find_revolution(stack, along, cfg.presence.stride)
    steps = np.diff(np.asarray(times, np.float64))
    step = float(np.median(steps)) if steps.size else 0.0
    fps = 1.0 / step if step > 0 else None
    result.belt_travel_px = rev.travel_px
    result.revolution_px = rev.period_px
    result.revolution = revolution_summary(rev, fps, cfg.belt.speed_mps)
    note = revolution_note(rev, fps, cfg.belt.speed_mps)
    if note:
        result.notes.append(note)


def _propose(
    cfg: DeviceConfig,
    model: BeltModel,
    stack: np.ndarray,
    head: list[np.ndarray],
    detected: str | None,
    shift: tuple[float, float],
) -> Commissioning:
    noise = model.noise
    min_diff = float(np.clip(round(2.0 * noise), 10, 40))
    green = np.concatenate([r[..., 1].ravel() for r in head])
    belt_green = float(np.percentile(green, 99.5))
    threshold = int(min(250, round(belt_green + 30)))
    notes = []
    if belt_green > 150:
        notes.append(
            f"the belt is bright (green p99.5 {belt_green:.0f}): the brightness rule needs a "
            "dark belt, use presence.method: background"
        )
    if detected is not None and detected != cfg.belt.direction:
        notes.append(f"the belt moves {detected}; the config says {cfg.belt.direction}")
    if detected is None:
        notes.append(
            f"the belt did not visibly move; direction {cfg.belt.direction} from the config"
        )
    bg = cfg.presence.background.model_copy(update={"min_diff": min_diff, "learn_rate": 0.0})
    pres = cfg.presence.model_copy(update={"background": bg})
    measure = BackgroundPresence(pres, model, model.direction)
    seen = sum(1 for s in stack if measure.blobs_of(s))
    return Commissioning(
        model=model,
        direction=model.direction,
        detected=detected,
        shift_px=shift,
        frames=len(stack),
        min_diff=min_diff,
        merge_gap=max(cfg.presence.merge_gap, BACKGROUND_MERGE_GAP),
        brightness_threshold=threshold,
        frames_with_package=seen / len(stack),
        notes=notes,
    )
