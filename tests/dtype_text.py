"""An independent reader of tensordb's dtype text (docs/format.md), shared by tests that must not use tensordb's own."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def parse_dtype_text(text: str) -> np.dtype[Any]:
    """numpy's ``dtype.str`` as is, or tensordb's JSON description of a record dtype."""
    return _from_spec(json.loads(text)) if text.startswith("{") else np.dtype(text)


def _from_spec(spec: Any) -> np.dtype[Any]:
    if isinstance(spec, str):
        return np.dtype(spec)
    if "subarray" in spec:
        base, dims = spec["subarray"]
        return np.dtype((_from_spec(base), tuple(dims)))
    layout = {"names": spec["names"], "formats": [_from_spec(f) for f in spec["formats"]],
              "offsets": spec["offsets"], "itemsize": spec["itemsize"]}
    if "titles" in spec:
        layout["titles"] = spec["titles"]
    return np.dtype(layout, align=spec.get("aligned", False))  # type: ignore[call-overload,no-any-return]
