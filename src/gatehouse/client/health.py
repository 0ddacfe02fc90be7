"""`gatectl status` checks: is every service a config enables actually serving?"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gatehouse._sys.hostport import dial_addr, split_host_port
from gatehouse.client.admin import AdminTarget
from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.errors import GatehouseError
from gatehouse.wire.authapi import NodeQuery

__all__ = ["Check", "check_services"]


@dataclass(frozen=True)
class Check:
    service: str
    ok: bool
    detail: str


async def _ssh_banner(addr: str) -> bool:
    host, port = split_host_port(addr)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        return False
    try:
        return (await asyncio.wait_for(reader.readline(), 5)).startswith(b"SSH-2.0-")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def check_services(target: AdminTarget) -> list[Check]:
    cfg = target.config
    assert cfg is not None
    checks = [Check("auth", True, f"serving on {target.addr}")]
    if cfg.proxy_service.enabled:
        addr = dial_addr(cfg.proxy_service.listen_addr)
        try:
            async with AuthClient(APIClient(addr, target.ssl_context,
                                            server_hostname=f"proxy.{target.cluster}")) as api:
                await api.ping()
            checks.append(Check("proxy", True, f"serving on {addr}"))
        except GatehouseError as exc:
            checks.append(Check("proxy", False, str(exc)))
    if cfg.ssh_service.enabled:
        name = cfg.gatehouse.nodename
        async with target.api() as api:
            mine = await api.list_nodes(NodeQuery(hostname=name))
        if not mine:
            checks.append(Check("ssh", False, f"node {name} is not registered (no heartbeat)"))
        elif not await _ssh_banner(mine[0]["spec"]["addr"]):
            checks.append(Check("ssh", False,
                                f"node {name} registered at {mine[0]['spec']['addr']} "
                                "but not answering SSH there"))
        else:
            checks.append(Check("ssh", True, f"node {name} registered and answering at "
                                f"{mine[0]['spec']['addr']}"))
    return checks
