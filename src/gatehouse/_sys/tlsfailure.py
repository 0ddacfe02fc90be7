"""Why a TLS peer's certificate was refused, in words a person can act on (OpenSSL's
verify code, read with this machine's clock), for clients and servers alike."""

from __future__ import annotations

import datetime as dt
import ssl

__all__ = ["verify_failure"]

# OpenSSL's X509_V_ERR_CERT_NOT_YET_VALID and X509_V_ERR_CERT_HAS_EXPIRED
_NOT_YET_VALID, _EXPIRED = 9, 10


def verify_failure(exc: ssl.SSLCertVerificationError, now: dt.datetime, *,
                   client: bool = False) -> str:
    """Why the peer's certificate was refused, in words a person can act on: a validity
    window missed by this machine's clock (``now``) says so, as a clock is the likely
    culprit (certificates start pki.x509.BACKDATE before they are issued, so a clock more
    than that behind its cluster's sees them as not valid yet). ``client``: a server
    judging a client's certificate, whose issuer (another host's auth) may be the one
    whose clock is off."""
    at = f"{now.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    if exc.verify_code == _NOT_YET_VALID:
        if client:
            return (f"its certificate is not valid yet by this machine's clock ({at}): the "
                    "clock of the auth that issued it is likely ahead of this one's; check "
                    "both (timedatectl, NTP)")
        return (f"its certificate is not valid yet by this machine's clock ({at}): the "
                "clock is likely behind; check it (timedatectl, NTP)")
    if exc.verify_code == _EXPIRED:
        return (f"its certificate has expired by this machine's clock ({at}): the clock "
                "may be ahead (check it: timedatectl, NTP), or the peer kept an old "
                "certificate")
    return exc.verify_message or exc.reason or str(exc)
