"""The project's one argument-error type, importable without the model stack (torch, nets)."""

from __future__ import annotations

from typing import Any

import numpy as np


class UsageError(ValueError):
    """A bad argument (scale, device, steps, ...): reported before any work starts."""


def is_int(value: Any) -> bool:
    """A whole number of Python's or numpy's, not a bool (True is no step count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number of Python's or numpy's, not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
