"""The daemon's open-file limit: raised to the hard limit at start.

Every tunnel, session and proxied connection holds a descriptor or two, and the
usual soft limit (1,024) is far below what one proxy serving thousands of tunnel
nodes needs; the hard limit is what the operator (or systemd's LimitNOFILE) allows.
"""

from __future__ import annotations

import logging
import resource

__all__ = ["raise_open_file_limit"]

log = logging.getLogger(__name__)


def raise_open_file_limit() -> int:
    """Set the soft RLIMIT_NOFILE to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard
