"""Valid JSON out, always: NaN and +/-Infinity become ``null`` (``json`` would write bare ``NaN``).

Every JSON file or message the project writes goes through :func:`dumps` or :func:`write`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (numpy floats included) replaced by None."""
    if isinstance(obj, float):  # np.float64 is a float subclass
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # numpy scalars and arrays
        return finite(obj.tolist())
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """``json.dumps`` that maps NaN/inf to null and refuses anything else non-standard."""
    return json.dumps(finite(obj), allow_nan=False, **kw)


def write(path: Path, obj: Any, indent: int | None = 2, **kw: Any) -> None:
    """Write ``obj`` as JSON (plus a newline) to ``path``, UTF-8."""
    Path(path).write_text(dumps(obj, indent=indent, **kw) + "\n", encoding="utf-8")
