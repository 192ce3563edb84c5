"""Shared pytest setup for the core suite.

Hypothesis reports a failing example through ``hypothesis.extra._patching``, whose import
(via libcst) emits a DeprecationWarning from mypy_extensions; under ``filterwarnings =
error`` that turns every hypothesis failure into an unreadable pytest INTERNALERROR. Importing
it once here, with that warning silenced, keeps failure reports readable.
"""

from __future__ import annotations

import contextlib
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401
