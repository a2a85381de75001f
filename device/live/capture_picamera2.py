"""Picamera2 (Raspberry Pi CSI cameras via libcamera) behind the cv2.VideoCapture-like interface
that :class:`parcelguard.device.live.capture.LiveSource` reads; picamera2 is imported only here."""

from __future__ import annotations

import logging

import numpy as np
from parcelguard.device.config.daemon import CaptureConfig
from parcelguard.device.errors import ParcelguardError

log = logging.getLogger(__name__)


class Picamera2Capture:
    """Picamera2 behind the ``read()/release()/isOpened()`` interface LiveSource expects."""

    def __init__(self, cfg: CaptureConfig):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise ParcelguardError(
                "picamera2 is not installed; on Raspberry Pi OS: sudo apt install python3-picamera2 (and create the venv with --system-site-packages)"
            ) from None
        self.cam = Picamera2()
        size = (cfg.width or 1280, cfg.height or 720)
        # "RGB888" in libcamera's naming is B,G,R in memory: what OpenCV calls BGR.
        conf = self.cam.create_video_configuration(
            main={"size": size, "format": "RGB888"}, buffer_count=2
        )
        self.cam.configure(conf)
        if cfg.fps:
            self.cam.set_controls({"FrameRate": cfg.fps})
        self.cam.start()
        self.opened = True

    def isOpened(self) -> bool:  # noqa: N802 - cv2's spelling
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        try:
            return True, self.cam.capture_array("main")
        except Exception as exc:
            log.warning("picamera2 capture failed: %s", exc)
            return False, None

    def release(self) -> None:
        if self.opened:
            self.opened = False
            self.cam.stop()
            self.cam.close()
