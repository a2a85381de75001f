"""The annotated replay video: what the loop saw and decided, drawn on every frame it processed.

An :class:`Annotator` is the loop's ``on_frame`` hook (it reads the loop's state, never changes
it, so events stay byte-identical): the ROI box, each tracked presence blob with its package
number (yellow while undecided, then red/green with the verdict once decided), this frame's score
when the frame was classified, the last decisions and, in real-time replay, the dropped-frame count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.inspection.loop import InspectionLoop
from parcelguard.device.inspection.presence import roi_rect
from parcelguard.device.inspection.segment import Blob

log = logging.getLogger(__name__)

_YELLOW, _RED, _GREEN, _GREY = (0, 220, 255), (0, 0, 255), (0, 200, 0), (200, 200, 200)


def _text(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    color: tuple[int, int, int],
    scale: float = 0.5,
) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


class Annotator:
    """Writes ``path`` (MP4, mp4v) from the frames the loop processed; call :meth:`close` at the end."""

    def __init__(
        self,
        path: Path,
        fps: float,
        roi: tuple[int, int, int, int] | None,
        current_frame: Callable[[], np.ndarray | None],
        dropped: Callable[[], int] | None = None,
    ):
        self.path = Path(path)
        self.fps = fps
        self.roi = roi
        self.current_frame = current_frame
        self.dropped = dropped
        self.loop: InspectionLoop | None = None
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0
        self._verdicts: dict[int, tuple[str, float | None]] = {}
        self._n_events = 0

    def bind(self, loop: InspectionLoop) -> None:
        self.loop = loop

    def _open(self, frame: np.ndarray) -> cv2.VideoWriter:
        h, w = frame.shape[:2]
        wr = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
        if not wr.isOpened():
            raise ParcelguardError(
                f"cannot write the annotated video {self.path} (no mp4v encoder in this OpenCV?)"
            )
        return wr

    def __call__(self, idx: int, ts: float, inference_s: float | None) -> None:
        frame = self.current_frame()
        if frame is None or self.loop is None:
            return
        if self.writer is None:
            self.writer = self._open(frame)
        self.writer.write(self.draw(frame, idx, ts))
        self.frames += 1

    def draw(self, frame: np.ndarray, idx: int, ts: float) -> np.ndarray:
        loop = self.loop
        assert loop is not None, "bind() the loop first"
        img = frame.copy()
        for ev in list(loop.events)[self._n_events :]:
            self._verdicts[ev.package_seq] = (ev.verdict, ev.score)
        self._n_events = len(loop.events)
        x, y, w, h = self.roi or (0, 0, img.shape[1], img.shape[0])
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), _GREY, 1)
        band = loop.cfg.presence.center_band / 2
        for edge in (0.5 - band, 0.5 + band):  # the centre band, in belt order
            ex0, ey0, ex1, ey1 = roi_rect(Blob(edge, edge), (w, h), loop.direction)
            ex, ey = min(ex0, w - 1), min(ey0, h - 1)
            end = (x + ex, y + h - 1) if ex1 - ex0 == 0 else (x + w - 1, y + ey)
            cv2.line(img, (x + ex, y + ey), end, _GREY, 1, cv2.LINE_AA)
        for tr in loop.segmenter.tracks:
            if tr.misses:
                continue
            verdict = self._verdicts.get(tr.seq)
            color = _YELLOW if verdict is None else (_GREEN if verdict[0] == "ok" else _RED)
            bx0, by0, bx1, by1 = roi_rect(tr.blob, (w, h), loop.direction)
            x0, x1 = x + bx0, x + bx1 - 1
            cv2.rectangle(img, (x0, y + max(by0, 2)), (x1, y + min(by1, h - 2) - 1), color, 2)
            label = f"#{tr.seq}" if verdict is None else f"#{tr.seq} {verdict[0]}"
            _text(img, label, (x0 + 2, y + h + 16), color)
        fs = loop.stats.frame_scores
        score = fs[-1][1] if fs and fs[-1][0] == idx else None
        head = f"frame {idx}  t {ts:7.3f}s  " + (
            f"score {score:.3f} / thr {loop.threshold:.3f}"
            if score is not None
            else "presence only"
        )
        _text(img, head, (8, 20), _GREY)
        if self.dropped is not None:
            _text(img, f"dropped {self.dropped()}", (8, 40), _YELLOW)
        for i, ev in enumerate(list(loop.events)[-3:][::-1]):
            s = "n/a" if ev.score is None else f"{ev.score:.3f}"
            color = _GREEN if ev.verdict == "ok" else _RED
            _text(
                img, f"#{ev.package_seq} {ev.verdict} {s}", (8, img.shape[0] - 12 - 20 * i), color
            )
        return np.asarray(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            log.info("annotated video: %s (%d frames)", self.path, self.frames)
