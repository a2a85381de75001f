"""The one list of backend names.

``device/backends`` has one REGISTRY entry per name (tests/device/test_backend_registry.py), the
config sections (``model.backend``, ``shadow.backend``) accept these and the CLI offers them. It
lives in its own module because both ``config.device`` and ``config.watch`` use it.
"""

from __future__ import annotations

from typing import Literal, get_args

BackendName = Literal["litert", "onnx", "onnx_int8"]
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)
