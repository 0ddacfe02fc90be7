"""One auth per etcd prefix while the audit log cannot be shared (services.sole_auth),
on a real etcd: a second auth is refused with the reason; the same auth restarted, or
another once the claim is given up or has lapsed, gets it."""

from __future__ import annotations

import datetime as dt

import pytest

from gatehouse.backend import EtcdBackend
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter
from gatehouse.services.sole_auth import TTL, SoleAuth

from ..etcdserver import EtcdServer

REFUSED = ("another auth \\(auth1:/data\\) runs on this etcd prefix: several auths on etcd "
           "need gatehouse.storage.audit_conn_string so that the audit trail is not split")


async def test_a_second_auth_on_one_etcd_prefix_is_refused(etcd: EtcdServer,
                                                           clock: FakeClock) -> None:
    settings = etcd.settings()
    async with (await EtcdBackend.open(settings, clock=clock) as one,
                await EtcdBackend.open(settings, clock=clock) as two):
        first = await SoleAuth.claim(one, "auth1:/data", clock)
        with pytest.raises(BadParameter, match=REFUSED):
            await SoleAuth.claim(two, "auth2:/data", clock)
        restarted = await SoleAuth.claim(two, "auth1:/data", clock)  # same node, same data
        await restarted.release()
        second = await SoleAuth.claim(two, "auth2:/data", clock)  # given up: free
        await first.release()  # no longer its claim: leaves auth2's alone
        with pytest.raises(BadParameter, match="another auth \\(auth2:/data\\)"):
            await SoleAuth.claim(one, "auth1:/data", clock)
        clock.advance(TTL + dt.timedelta(seconds=1))  # auth2 died without renewing
        third = await SoleAuth.claim(one, "auth3:/data", clock)
        await third.release()
        await second.release()
