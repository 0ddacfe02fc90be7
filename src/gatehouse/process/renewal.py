"""Certificates that look after themselves: a stored identity is renewed at two thirds
of its lifetime, without an operator, and whoever uses it picks up the new one.

The auth decides what a renewal may carry (exactly what the host was certified
with) and refuses a removed host (auth.server.AuthServer.renew_host); this side only
decides *when*, from the certificate's own validity, and keeps the same key.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from gatehouse.clock import Clock, Monotonic
from gatehouse.errors import AccessDenied, GatehouseError
from gatehouse.pki.keystore import StoredIdentity

__all__ = ["RECHECK", "RETRY", "Fresh", "Renewal", "renewal_due"]

log = logging.getLogger(__name__)

RECHECK = 3600.0  # the wall clock can jump: look again at least hourly while waiting
RETRY = 60.0  # after a failed renewal (auth unreachable, or this host removed)


class Fresh(NamedTuple):
    """Certificates just issued for the stored key (no SSH certificate: admin creds)."""

    tls_cert: str
    ssh_cert: str | None


def renewal_due(not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """When a certificate valid from ``not_before`` to ``not_after`` is renewed."""
    return not_before + (not_after - not_before) * 2 / 3


class Renewal:
    """Renews ``store``'s certificates through ``renew`` when they are due."""

    def __init__(
        self,
        name: str,
        store: StoredIdentity,
        renew: Callable[[StoredIdentity], Awaitable[Fresh]],
        clock: Clock,
        timer: Monotonic,
    ) -> None:
        self._name = name
        self._store = store
        self._renew = renew
        self._clock = clock
        self._timer = timer
        self._reloads: list[Callable[[], None]] = []

    def on_renewed(self, reload: Callable[[], None]) -> None:
        """Call ``reload`` after each renewal, once the new certificates are on disk."""
        self._reloads.append(reload)

    def reload_context(self, ctx: ssl.SSLContext) -> None:
        """Keep ``ctx`` presenting the current certificate (new handshakes use it)."""
        store = self._store
        self.on_renewed(lambda: ctx.load_cert_chain(store.tls_cert_file, store.key_pem_file))

    def _seconds_to_due(self) -> float:
        cert = self._store.tls_cert()
        due = renewal_due(cert.not_valid_before_utc, cert.not_valid_after_utc)
        return (due - self._clock.now()).total_seconds()

    async def run(self) -> None:
        """Until cancelled: wait for the due time, renew, tell the users; retry failures."""
        while True:
            wait = self._seconds_to_due()
            if wait > 0:
                await self._timer.sleep(min(wait, RECHECK))
                continue
            try:
                fresh = await self._renew(self._store)
            except AccessDenied as exc:
                log.error("certificate not renewed identity=%s reason=%r", self._name, str(exc))
                await self._timer.sleep(RETRY)
                continue
            except GatehouseError as exc:
                log.warning("certificate renewal failed identity=%s reason=%r (retrying)",
                            self._name, str(exc))
                await self._timer.sleep(RETRY)
                continue
            self._store.save_certs(fresh.tls_cert, fresh.ssh_cert)
            for reload in self._reloads:
                reload()
            log.info("certificate renewed identity=%s expires=%s", self._name,
                     self._store.tls_cert().not_valid_after_utc.isoformat())
