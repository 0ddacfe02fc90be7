"""The diag endpoints (process.diag) on a real loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatehouse import metrics
from gatehouse.errors import ConnectionProblem
from gatehouse.process import diag
from gatehouse.process.diag import Readiness, serving
from gatehouse.process.harness import free_ports


def _free() -> str:
    return f"127.0.0.1:{free_ports(1)[0]}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def _get(http: aiohttp.ClientSession, addr: str, path: str) -> tuple[int, str]:
    async with http.get(f"http://{addr}{path}") as resp:
        return resp.status, await resp.text()


async def test_health_readiness_and_its_reasons(http: aiohttp.ClientSession,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diag, "CHECK_TIMEOUT", 0.2)
    readiness = Readiness()
    answers: dict[str, BaseException | None] = {"auth": None}

    async def auth_check() -> None:
        if (problem := answers["auth"]) is not None:
            raise problem

    async def slow_check() -> None:
        await asyncio.sleep(5)

    readiness.add("auth", auth_check)
    async with serving(_free(), readiness) as addr:
        assert await _get(http, addr, "/healthz") == (200, "ok\n")
        assert await _get(http, addr, "/readyz") == (
            503, "starting: not every enabled service serves yet\n")
        readiness.started = True
        assert await _get(http, addr, "/readyz") == (200, "ready\n")
        answers["auth"] = ConnectionProblem("lost 127.0.0.1:3025: Connection refused")
        readiness.add("proxy", slow_check)
        assert await _get(http, addr, "/readyz") == (
            503, "auth: lost 127.0.0.1:3025: Connection refused\n"
                 "proxy: no answer within 0.2 s\n")
        assert (await _get(http, addr, "/nothing"))[0] == 404


async def test_metrics_in_prometheus_text_format(http: aiohttp.ClientSession) -> None:
    metrics.CERTIFICATES.labels("user").inc()
    addr = _free()
    async with serving(addr, Readiness()), http.get(f"http://{addr}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("gatehouse_certificates_issued_total", (("kind", "user"),))] >= 1
    assert ("process_open_fds", ()) in samples


async def test_a_port_in_use_is_one_line_naming_the_key() -> None:
    async with serving(_free(), Readiness()) as addr:
        with pytest.raises(Exception, match=rf"gatehouse.diag_addr {addr} is already in use"):
            async with serving(addr, Readiness()):
                pass


def test_login_and_session_outcomes_are_counted_from_their_events() -> None:
    def value(counter: object, outcome: str) -> float:
        return metrics.REGISTRY.get_sample_value(f"{counter}_total", {"outcome": outcome}) or 0

    before = (value("gatehouse_logins", "failure"), value("gatehouse_sessions", "denied"))
    for event in ("user.login.failure", "auth", "exec", "session.end"):
        metrics.count_event(event)
    assert (value("gatehouse_logins", "failure"), value("gatehouse_sessions", "denied")) == \
        (before[0] + 1, before[1] + 1)
