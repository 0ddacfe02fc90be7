"""Keep freed heap memory for reuse: streaming must not fault its buffers in again.

Every SSH packet, TLS record and tunnel frame on a data path is a fresh Python
bytes object of up to a few hundred KiB, freed moments later. glibc's malloc
returns the top of the heap to the kernel once more than M_TRIM_THRESHOLD is
free there (128 KiB by default, adapting upwards only so far), so each new
packet's buffer was faulted in again, page by page: measured on a 1 GiB stream
through a node, over half of the node's CPU time went to those page faults.
Fixed thresholds keep up to TRIM_THRESHOLD of freed heap mapped, and serve
blocks below MMAP_THRESHOLD from the heap instead of fresh mappings (mallopt(3)).
"""

from __future__ import annotations

import ctypes
import logging

__all__ = ["keep_freed_memory"]

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 64 << 20
MMAP_THRESHOLD = 16 << 20

log = logging.getLogger(__name__)


def keep_freed_memory() -> bool:
    """Set the thresholds for this process; False where malloc is not glibc's."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # e.g. musl, macOS: their allocators differ
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.debug("mallopt refused the heap thresholds")
    return ok
