"""What a stranger (a caller without a certificate) may cost the auth: its logins, joins
and refused calls spend a budget per source address (then 429 with Retry-After), its
failures' repeats are audited as one event with a count, and every audit event
expires after the retention."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gatehouse.auth.failures import FLUSH_EVERY, AnonymousFailures
from gatehouse.auth.server import AuthServer
from gatehouse.clock import FakeClock, FakeMonotonic
from gatehouse.config import AuthLimits, AuthSection
from gatehouse.errors import GatehouseError
from gatehouse.pki import sshcert
from gatehouse.repeats import NAMES
from gatehouse.services.events import AuditEvent
from gatehouse.wire.names import CLIENT_CERT_HEADER, REMOTE_ADDR_HEADER
from tests.auth.conftest import API
from tests.auth.samples import new_key

pytestmark = pytest.mark.usefixtures("fast_hashing")

LIMITS = AuthLimits()
BURST = LIMITS.attempts_burst
ATTEMPTS = 100  # well past the burst
REFILL = dt.timedelta(seconds=60 / LIMITS.attempts_per_minute)  # one attempt back


@pytest.fixture
def clock() -> FakeClock:
    # The TLS handshake checks certificates against the real time, not this clock.
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


def _login(user: str) -> dict[str, str]:
    return {"user": user, "password": "not the password",
            "public_key": sshcert.public_key_line(new_key())}


async def _failures(server: AuthServer, event: str) -> list[dict[str, object]]:
    return [e.fields for e in (await server.audit.search(types=[event])).events]


async def oldest_first(server: AuthServer) -> list[AuditEvent]:
    """Every stored event in the order it was stored (a search lists newest first)."""
    return list(reversed((await server.audit.search()).events))


async def test_a_stranger_s_failed_logins_are_limited_and_audited_once(
        api: API, server: AuthServer, clock: FakeClock) -> None:
    statuses: list[int] = []
    retry_after: list[str] = []
    for i in range(ATTEMPTS):  # a new name each time: no user's lock stops this
        status, headers, reply = await api.stranger("POST", "/v1/login", _login(f"user{i}"))
        statuses.append(status)
        if status == 429:
            retry_after.append(headers.get("Retry-After", ""))
            assert reply["error"] == "too many attempts from 127.0.0.1: try again in 2 s"
    assert statuses == [403] * BURST + [429] * (ATTEMPTS - BURST)
    assert retry_after == ["2"] * (ATTEMPTS - BURST)
    # The budget refills: one attempt per REFILL.
    clock.advance(REFILL)
    assert (await api.stranger("POST", "/v1/login", _login("late")))[0] == 403
    assert (await api.stranger("POST", "/v1/login", _login("later")))[0] == 429
    # One event at once; the window's repeats become one more when it ends.
    assert await _failures(server, "user.login.failure") == [{}]
    clock.advance(LIMITS.failure_window)
    await server.failures.flush()
    summary, _ = await _failures(server, "user.login.failure")  # newest first
    assert summary["count"] == BURST  # the burst's after the first, and "late"
    assert summary["names"] == [f"user{i}" for i in range(1, NAMES + 1)]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/join", {"token": "guessed-token-guessed-token", "role": "node", "nodename": "n1",
                  "public_key": sshcert.public_key_line(new_key()), "addrs": [],
                  "dns_names": []}),
    ("/v1/nodes", None),  # refused without a certificate
])
async def test_joins_and_refused_calls_spend_the_budget(
        api: API, server: AuthServer, path: str, body: object) -> None:
    method = "POST" if body else "GET"
    statuses = [(await api.stranger(method, path, body))[0] for _ in range(BURST + 5)]
    assert statuses == [403] * BURST + [429] * 5
    # Once spent, every call without a certificate waits; a certificate's holder does not.
    assert (await api.stranger("GET", "/v1/ping"))[0] == 429
    alice = await api.user("alice", ["access"])
    assert await alice.get("/v1/clusters")


async def test_a_proxy_s_clients_are_limited_by_their_own_address(api: API) -> None:
    """A proxy relays an anonymous client with its address (as proxy/web.py does)."""
    proxies = {remote: await api.host("proxy", f"proxy-{remote}", "proxy1", [], headers={
        CLIENT_CERT_HEADER: "", REMOTE_ADDR_HEADER: remote}) for remote in ("192.0.2.7",
                                                                          "192.0.2.8")}
    names = iter(range(BURST + 2))

    async def via_proxy(remote: str) -> int:
        try:
            await proxies[remote].post("/v1/login", _login(f"user{next(names)}"))
        except GatehouseError as exc:
            return exc.status
        return 200

    for _ in range(BURST):
        assert await via_proxy("192.0.2.7") == 403
    assert await via_proxy("192.0.2.7") == 429
    assert await via_proxy("192.0.2.8") == 403  # another client of the same proxy
    assert (await api.stranger("GET", "/v1/ping"))[0] == 200  # and the proxy's own address


async def test_repeats_from_another_source_or_of_another_kind_are_their_own(
        server: AuthServer, clock: FakeClock) -> None:
    failures = AnonymousFailures(server.audit, clock, dt.timedelta(minutes=1), sources=2)
    for remote in ("192.0.2.1:1000", "192.0.2.1:1001", "192.0.2.2:1000"):
        await failures.emit("join.failure", node="n1", remote_addr=remote)
    await failures.emit("user.login.failure", user="u", remote_addr="192.0.2.1:1000")
    # Past the bound of open windows a failure is stored alone, as it was.
    assert len(await oldest_first(server)) == 3
    await failures.flush(everything=True)
    counts = [(e.event, e.remote_addr, e.fields.get("count")) for e in await oldest_first(server)]
    assert sorted(counts, key=str) == sorted([
        ("join.failure", "192.0.2.1:1000", None), ("join.failure", "192.0.2.2:1000", None),
        ("user.login.failure", "192.0.2.1:1000", None),
        ("join.failure", "192.0.2.1:1001", 1)], key=str)


async def test_windows_close_as_they_end_and_all_at_shutdown(server: AuthServer,
                                                             clock: FakeClock) -> None:
    timer = FakeMonotonic()
    failures = AnonymousFailures(server.audit, clock, dt.timedelta(seconds=10), sources=10)
    runner = asyncio.create_task(failures.run(timer))
    for remote in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"):
        await failures.emit("join.failure", node="n1", remote_addr=remote)
        clock.advance(dt.timedelta(seconds=3))  # at 12 s the first window ended, not the second
    await asyncio.wait_for(timer.until_sleeping(), 5)
    timer.advance(FLUSH_EVERY)
    await asyncio.wait_for(timer.until_sleeping(), 5)
    assert [(e.remote_addr, e.fields.get("count")) for e in await oldest_first(server)] == [
        ("192.0.2.1", None), ("192.0.2.2", None), ("192.0.2.1", 1)]
    runner.cancel()  # a stopping auth stores what its open windows counted
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert [e.fields.get("count") for e in await oldest_first(server)][-1] == 1
    assert len(await oldest_first(server)) == 4


async def test_audit_events_expire_after_the_retention(server: AuthServer,
                                                       clock: FakeClock) -> None:
    await server.audit.emit("token.create")
    clock.advance(AuthSection().audit_retention - dt.timedelta(seconds=1))
    assert len(await oldest_first(server)) == 1
    clock.advance(dt.timedelta(seconds=2))
    assert await oldest_first(server) == []


async def test_a_body_nested_past_the_parser_s_depth_is_bad_input(
        api: API, caplog: pytest.LogCaptureFixture) -> None:
    """json.loads raises RecursionError (not ValueError) on deep nesting: it was an
    internal error with a traceback, which a stranger could repeat at will. Now it is a
    400 like any body that is not JSON."""
    deep = b"[" * 100_000 + b"]" * 100_000
    status, _, reply = await api.stranger("POST", "/v1/login", raw=deep)
    assert (status, reply) == (400, {"error": "request body is not JSON"})
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text
