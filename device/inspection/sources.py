"""Frame sources: iterators of ``(frame_bgr, timestamp_s)``.

A file or image-folder source runs on a virtual clock (frame index / fps), so replay is exact and
deterministic: the same file gives the same frames and timestamps every time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from parcelguard.device.errors import ParcelguardError
from parcelguard.device.imageheader import check_image_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class FileSource:
    """Every frame of a video file, timestamped ``index / fps``."""

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ParcelguardError(f"video {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise ParcelguardError(
                f"video {self.path} could not be opened (not a video, or corrupt)"
            )
        file_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = float(fps or file_fps or 30.0)
        self.expected_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cap.release()
        self.frames_read = 0
        self.truncated = False

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        cap = cv2.VideoCapture(str(self.path))
        idx, ended = 0, False
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    ended = True  # not when the reader stops early (commissioning's first N)
                    break
                yield frame, idx / self.fps
                idx += 1
        finally:
            cap.release()
            self.frames_read = idx
            if ended and self.expected_frames and idx < self.expected_frames:
                self.truncated = True
                log.warning(
                    "video %s ended after %d of %d frames (truncated or corrupt)",
                    self.path,
                    idx,
                    self.expected_frames,
                )
        if idx == 0:
            raise ParcelguardError(
                f"video {self.path} has no readable frames (truncated or corrupt)"
            )


class ImageFolderSource:
    """Images of a folder in name order, timestamped ``index / fps``."""

    def __init__(self, path: str | Path, fps: float = 30.0):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ParcelguardError(f"image folder {self.path} does not exist")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ParcelguardError(f"image folder {self.path} has no images")
        self.fps = fps
        self.skipped: list[Path] = []

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        for idx, f in enumerate(self.files):
            why = check_image_file(f)  # before decoding: a tiny file can claim gigapixels
            if why is not None:
                log.warning("skipping image %s: %s", f, why)
                self.skipped.append(f)
                continue
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                log.warning("skipping unreadable image %s", f)
                self.skipped.append(f)
                continue
            yield img, idx / self.fps
