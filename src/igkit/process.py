"""Settings of a process that igkit owns: the ``igkit`` command and its Ray actors.

glibc's ``malloc`` hands large freed blocks back to the system at once: a block above its mmap
threshold is unmapped when freed, and free memory at the top of the heap is trimmed. A framework
on the CPU allocates and frees every batch's activations, so the next batch takes page faults on
memory it just had: on 2 CPU cores the default call on EfficientNet-Lite0 and one photo spends a
quarter to a third of its time there (``benchmarks/RESULTS.md``). :func:`keep_freed_memory`
raises both thresholds so that the process keeps the memory it frees and reuses it.

The ``igkit`` command calls it before it imports any framework, and so do the Ray actors of
``explain-dataset`` and ``evaluate``: igkit owns those processes. ``import igkit`` does not: a
notebook or a user's script owns its process, and may call the function itself or start Python
with the equivalent variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["KEEP_MMAP_THRESHOLD", "KEEP_TRIM_THRESHOLD", "keep_freed_memory"]

#: Blocks below this size come from the heap, not from their own mapping (glibc: 128 KiB, rising
#: with the largest block freed, at most 32 MiB; a 32-row batch of EfficientNet-Lite0's stem is
#: 200 MiB).
KEEP_MMAP_THRESHOLD = 256 * 1024 * 1024
#: Free memory at the top of the heap is given back only beyond this size.
KEEP_TRIM_THRESHOLD = 1024 * 1024 * 1024

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

#: What the first call of :func:`keep_freed_memory` in this process did (None: not called).
_done: str | None = None


def keep_freed_memory() -> str:
    """Make glibc's ``malloc`` keep freed memory for reuse; return what was done.

    Returns one of:

    - ``"kept"``: both thresholds were raised (:data:`KEEP_MMAP_THRESHOLD`,
      :data:`KEEP_TRIM_THRESHOLD`); the process then holds up to about a batch's activations
      between batches and between calls.
    - ``"user"``: the environment already sets one of glibc's ``MALLOC_*`` thresholds or a
      ``glibc.malloc.*`` tunable (``GLIBC_TUNABLES``); the user's choice stands.
    - ``"off"``: ``IGKIT_MALLOC=system`` asks igkit to leave the allocator alone.
    - ``"unsupported"``: not Linux with glibc (macOS, musl, Windows), or glibc refused.

    Both thresholds are always set together: setting only the trim threshold also turns off
    glibc's rising mmap threshold, which leaves every block above 128 KiB in its own mapping
    and made the call above 3x slower. Calling the function again returns the first answer.
    """
    global _done
    if _done is None:
        _done = _apply()
    return _done


def _apply() -> str:
    if os.environ.get("IGKIT_MALLOC", "").strip().lower() == "system":
        return "off"
    if any(name in os.environ for name in _USER_VARIABLES) or "glibc.malloc." in os.environ.get(
            "GLIBC_TUNABLES", ""):
        return "user"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "unsupported"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "unsupported"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # The mmap threshold first: if glibc refuses it, the trim threshold is not set alone.
    if mallopt(_M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD) != 1:
        return "unsupported"
    if mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD) != 1:
        return "unsupported"
    return "kept"
