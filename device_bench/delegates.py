"""Delegate libraries: the standard names, option strings, loading, and which ones this host can load.

The loading code itself lives in ``runner.py`` (it must work as a single file on a board); this module is the
package's place to reach it and adds :func:`probe` for ``device_bench --list-delegates``.
"""
from __future__ import annotations

import ctypes

from .runner import KNOWN_DELEGATE_LIBRARIES, load_external_delegate, parse_delegate_options

__all__ = ["KNOWN_DELEGATE_LIBRARIES", "load_external_delegate", "parse_delegate_options", "probe"]


def probe(libraries=None, /):
    """For each delegate library, whether the dynamic loader can open it here, and the reason when it cannot.

    >>> probe({"missing": "libdoes_not_exist.so"})["missing"]["loadable"]
    False
    """
    report = {}
    for name, path in (libraries or KNOWN_DELEGATE_LIBRARIES).items():
        try:
            ctypes.CDLL(path)
            report[name] = {"path": path, "loadable": True, "reason": None}
        except OSError as exc:
            report[name] = {"path": path, "loadable": False, "reason": str(exc)}
    return report
