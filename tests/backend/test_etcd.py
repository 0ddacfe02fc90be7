"""What the etcd backend adds to the compliance suite, on real etcd servers: several
backends on one prefix, an etcd restart, a watch whose connection hangs, TLS with client
certificates."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from gatehouse.backend import EtcdBackend, Event, Item, Watcher, prefix_end
from gatehouse.backend._etcd_gateway import b64
from gatehouse.backend.etcd import SUB
from gatehouse.clock import FakeClock
from gatehouse.errors import ConnectionProblem, LimitExceeded

from ..etcdserver import EtcdServer

RECONNECT_TIMEOUT = 15.0  # seconds for a backend to write again after etcd is back


async def take(watcher: Watcher, n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(watcher), 5) for _ in range(n)]


def summary(events: list[Event]) -> list[tuple[str, bytes, bytes]]:
    return [(e.type.value, e.item.key, e.item.value) for e in events]


@pytest.fixture
def own_etcd() -> Iterator[EtcdServer]:
    """An etcd of the test's own, which it may stop and start."""
    server = EtcdServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
async def pair(etcd: EtcdServer, clock: FakeClock) -> AsyncIterator[tuple[EtcdBackend,
                                                                          EtcdBackend]]:
    settings = etcd.settings()
    async with (await EtcdBackend.open(settings, clock=clock) as one,
                await EtcdBackend.open(settings, clock=clock) as two):
        yield one, two


async def test_two_backends_on_one_prefix_share_writes_and_watches(
        pair: tuple[EtcdBackend, EtcdBackend]) -> None:
    one, two = pair
    seen_one, seen_two = one.watch([b"/"]), two.watch([b"/"])
    written = []
    for n in range(10):
        writer = (one, two)[n % 2]
        written.append(await writer.put(Item(b"/k/%d" % (n % 3), b"%d" % n)))
    await two.delete(b"/k/0")
    assert (await one.get(b"/k/1")).value == b"7"
    assert [i.value for i in await two.get_range(b"/k/", b"/k0")] == [b"7", b"8"]
    expected = [("put", i.key, i.value) for i in written] + [("delete", b"/k/0", b"")]
    from_one, from_two = await take(seen_one, 11), await take(seen_two, 11)
    assert summary(from_one) == summary(from_two) == expected
    assert [e.item for e in from_one[:10]] == written  # same revisions as the writes saw
    revisions = [e.item.revision for e in from_one]
    assert revisions == sorted(set(revisions))
    assert [e.item.revision for e in from_two] == revisions


async def test_a_compare_and_swap_race_between_backends_has_one_winner(
        pair: tuple[EtcdBackend, EtcdBackend]) -> None:
    one, two = pair
    start = await one.put(Item(b"/counter", b"0"))
    results = await asyncio.gather(
        one.compare_and_swap(start, Item(b"/counter", b"one")),
        two.compare_and_swap(start, Item(b"/counter", b"two")), return_exceptions=True)
    winners = [r for r in results if isinstance(r, Item)]
    assert len(winners) == 1
    assert await two.get(b"/counter") == winners[0]


async def test_the_sweep_reads_the_expiry_index_and_drops_stale_entries(
        etcd: EtcdServer, clock: FakeClock) -> None:
    settings = etcd.settings()

    async def index_entries() -> int:
        start = settings.prefix.encode() + b"\0expires/"
        async with aiohttp.ClientSession() as http, http.post(
                etcd.url + "/v3/kv/range", json={"key": b64(start),
                                                 "range_end": b64(prefix_end(start)),
                                                 "count_only": True}) as resp:
            return int((await resp.json()).get("count", 0))

    soon, later = clock.now() + dt.timedelta(seconds=1), clock.now() + dt.timedelta(seconds=5)
    async with await EtcdBackend.open(settings, clock=clock) as backend:
        await backend.put(Item(b"/a", b"", expires=soon))
        await backend.put(Item(b"/a", b"", expires=later))  # its first entry is stale
        await backend.put(Item(b"/b", b"", expires=soon))
        await backend.delete(b"/b")
        await backend.put(Item(b"/c", b"", expires=soon))
        await backend.put(Item(b"/c", b"kept"))  # no expiry any more
        assert await index_entries() == 4
        clock.advance(dt.timedelta(seconds=2))
        assert await backend.sweep_expired() == 0
        assert await index_entries() == 1
        assert [i.key for i in await backend.get_range(b"/", b"0")] == [b"/a", b"/c"]
        clock.advance(dt.timedelta(seconds=3))
        assert await backend.sweep_expired() == 1
        assert await index_entries() == 0
        assert [i.value for i in await backend.get_range(b"/", b"0")] == [b"kept"]


async def test_etcd_restart_fails_writes_clearly_then_watches_resume_without_gaps(
        own_etcd: EtcdServer, clock: FakeClock) -> None:
    settings = own_etcd.settings()
    async with (await EtcdBackend.open(settings, clock=clock) as backend,
                await EtcdBackend.open(settings, clock=clock) as other):
        watcher = backend.watch([b"/"])
        before = await backend.put(Item(b"/a", b"before"))
        assert summary(await take(watcher, 1)) == [("put", b"/a", b"before")]
        own_etcd.stop()
        # A pooled connection finds the server gone; a new one finds nobody listening.
        with pytest.raises(ConnectionProblem, match=r"^etcd .*http://127\.0\.0\.1:\d+"):
            await backend.put(Item(b"/a", b"during"))
        with pytest.raises(ConnectionProblem, match=r"^etcd unreachable \(http://127\.0\.0\.1"):
            await backend.put(Item(b"/a", b"during"))
        own_etcd.start()
        # The other backend writes at once, before this one's watch has come back:
        # the watch resumes from the revision after the last it delivered.
        after = [await other.put(Item(b"/b/%d" % n, b"%d" % n)) for n in range(5)]
        deadline = asyncio.get_running_loop().time() + RECONNECT_TIMEOUT
        while True:  # bounded: until the deadline
            try:
                last = await backend.put(Item(b"/a", b"after"))
                break
            except ConnectionProblem:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        events = await take(watcher, 6)
        assert [e.item for e in events] == [*after, last]
        assert (await backend.get(b"/a")) == last
        assert before.revision < events[0].item.revision
        await other.put(Item(b"/z", b""))
        assert summary(await take(watcher, 1)) == [("put", b"/z", b"")]  # nothing repeated


class Forwarder:
    """A TCP forwarder to a loopback port whose connections the test can cut."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        handlers, self._handlers = self._handlers, set()
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except asyncio.CancelledError:  # cut: both ends closed
            writer.close()
            up_writer.close()


async def test_a_watch_resuming_past_compacted_history_tells_watchers_to_list_again(
        own_etcd: EtcdServer, clock: FakeClock) -> None:
    forwarder = Forwarder(own_etcd.client_port)
    await forwarder.start()
    direct = own_etcd.settings()
    cut_off = dataclasses.replace(direct, peers=[f"http://127.0.0.1:{forwarder.port}"])
    async with (await EtcdBackend.open(cut_off, clock=clock) as backend,
                await EtcdBackend.open(direct, clock=clock) as other):
        watcher = backend.watch([b"/"])
        await backend.put(Item(b"/x", b"1"))
        await forwarder.cut()
        last = [await other.put(Item(b"/x", b"%d" % n)) for n in (2, 3)][-1]
        async with aiohttp.ClientSession() as http, http.post(
                own_etcd.url + "/v3/kv/compaction",
                json={"revision": str(last.revision // SUB), "physical": True}) as resp:
            assert resp.status == 200, await resp.text()
        await forwarder.start()  # on the same port
        assert summary(await take(watcher, 1)) == [("put", b"/x", b"1")]
        with pytest.raises(LimitExceeded, match="list again"):
            await asyncio.wait_for(anext(watcher), RECONNECT_TIMEOUT)
        fresh = backend.watch([b"/"])  # a new watch after listing again works
        assert (await backend.get(b"/x")) == last
        stored = await backend.put(Item(b"/x", b"4"))
        assert [e.item for e in await take(fresh, 1)] == [stored]
    await forwarder.cut()


async def test_tls_with_client_certificates(clock: FakeClock) -> None:
    server = EtcdServer(tls=True)
    try:
        server.start()
        async with await EtcdBackend.open(server.settings(), clock=clock) as backend:
            watcher = backend.watch([b"/"])
            stored = await backend.put(Item(b"/users/alice", b"spec"))
            assert await backend.get(b"/users/alice") == stored
            assert summary(await take(watcher, 1)) == [("put", b"/users/alice", b"spec")]
        assert server.tls is not None
        good = server.settings()
        no_client_cert = dataclasses.replace(good, tls_cert_file=None, tls_key_file=None)
        with pytest.raises(ConnectionProblem,
                           match=f"^etcd unreachable \\({server.url}: .*bad certificate"):
            await EtcdBackend.open(no_client_cert, clock=clock)
        other_ca = dataclasses.replace(good, tls_ca_file=str(server.tls.client_cert))
        with pytest.raises(ConnectionProblem,
                           match=f"^etcd unreachable \\({server.url}: .*certificate verify"):
            await EtcdBackend.open(other_ca, clock=clock)
    finally:
        server.remove()


class FreezingRelay:
    """A TCP relay to etcd that can freeze the connections it holds: they stay open and
    carry nothing more (a NAT or firewall that dropped their state, a peer that hangs),
    while new connections go through, or hang too."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._frozen: list[asyncio.Event] = []
        self._server: asyncio.Server | None = None
        self._hang_new = False
        self.port = 0

    async def __aenter__(self) -> FreezingRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for frozen in self._frozen:
            frozen.set()
        assert self._server is not None
        self._server.close()

    def freeze(self, *, new_too: bool = False) -> None:
        """Every connection open now carries nothing more, and is never closed; with
        ``new_too``, so does every connection taken from now on."""
        self._hang_new = self._hang_new or new_too
        for frozen in self._frozen:
            frozen.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frozen = asyncio.Event()
        self._frozen.append(frozen)
        if self._hang_new:
            frozen.set()
            await asyncio.sleep(3600)  # held open, silent, until the test ends
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while not frozen.is_set() and (data := await src.read(65536)):
                if frozen.is_set():
                    break
                dst.write(data)
                await dst.drain()

        forwarding = [asyncio.create_task(pump(reader, up_writer)),
                      asyncio.create_task(pump(up_reader, writer))]
        await frozen.wait()
        for task in forwarding:
            task.cancel()
        await asyncio.gather(*forwarding, return_exceptions=True)
        await asyncio.sleep(3600)  # held open, silent, until the test ends


async def test_a_watch_on_a_hung_connection_is_replaced(
        etcd: EtcdServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch whose connection stops carrying anything, without closing, is given up
    after WATCH_IDLE seconds of silence and opened again: changes made meanwhile still
    reach the watchers, in order and once."""
    monkeypatch.setattr("gatehouse.backend.etcd.WATCH_IDLE", 1.0)
    settings = etcd.settings()
    port = int(settings.peers[0].rsplit(":", 1)[1])
    async with FreezingRelay(port) as relay:
        relayed = dataclasses.replace(settings, peers=[f"http://127.0.0.1:{relay.port}"])
        async with (await EtcdBackend.open(relayed, clock=clock) as watching,
                    await EtcdBackend.open(settings, clock=clock) as writer,
                    watching.watch([b"/k/"]) as watcher):
            await writer.put(Item(b"/k/1", b"before"))
            assert summary(await take(watcher, 1)) == [("put", b"/k/1", b"before")]
            relay.freeze()
            for n in range(2, 5):
                await writer.put(Item(b"/k/%d" % n, b"while frozen"))
            got = [await asyncio.wait_for(anext(watcher), 10) for _ in range(3)]
            assert summary(got) == [("put", b"/k/%d" % n, b"while frozen") for n in range(2, 5)]



@contextlib.asynccontextmanager
async def black_hole() -> AsyncIterator[tuple[str, list[asyncio.StreamWriter]]]:
    """An etcd peer that hangs: it accepts connections and never answers (a stopped
    process whose socket the kernel still accepts on, a half-dead VM); and the
    connections it took."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", held
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_a_hung_first_peer_is_left_for_the_next(
        etcd: EtcdServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads that get no answer from the first peer go on to the next within the call;
    the calls after it go to the next peer first: the hung one is asked once."""
    monkeypatch.setattr("gatehouse.backend._etcd_gateway.CALL_TIMEOUT", 1.0)
    settings = etcd.settings()
    async with black_hole() as (hung, taken):
        both = dataclasses.replace(settings, peers=[hung, *settings.peers])
        async with await asyncio.wait_for(EtcdBackend.open(both, clock=clock), 10) as backend:
            for n in range(5):
                await asyncio.wait_for(backend.put(Item(b"/k/%d" % n, b"v")), 10)
                assert (await asyncio.wait_for(backend.get(b"/k/%d" % n), 10)).value == b"v"
        assert len(taken) == 1


async def test_calls_that_fail_together_move_on_once(
        etcd: EtcdServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several calls in flight on a peer that then hangs each fail over to the next;
    the gateway moves on one peer, not once per call (four moves would bring it back
    round to the hung one)."""
    monkeypatch.setattr("gatehouse.backend._etcd_gateway.CALL_TIMEOUT", 1.0)
    monkeypatch.setattr("gatehouse.backend.etcd.WATCH_IDLE", 60.0)  # the calls', not its
    settings = etcd.settings()
    port = int(settings.peers[0].rsplit(":", 1)[1])
    async with FreezingRelay(port) as relay:
        first = f"http://127.0.0.1:{relay.port}"
        both = dataclasses.replace(settings, peers=[first, *settings.peers])
        async with await EtcdBackend.open(both, clock=clock) as backend:
            await backend.put(Item(b"/k/0", b"v"))
            relay.freeze(new_too=True)
            got = await asyncio.wait_for(asyncio.gather(
                *(backend.get(b"/k/0") for _ in range(4))), 10)
            assert [item.value for item in got] == [b"v"] * 4
            assert backend._gateway.first_peer == settings.peers[0].rstrip("/")


async def test_a_watch_opened_again_on_a_hung_peer_moves_on(
        etcd: EtcdServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch that goes silent is opened again; when the peer it asks then hangs too
    (no answer at all, not even its head), it asks the next peer, and its watchers
    miss nothing."""
    monkeypatch.setattr("gatehouse.backend._etcd_gateway.CALL_TIMEOUT", 1.0)
    monkeypatch.setattr("gatehouse.backend.etcd.WATCH_IDLE", 1.0)
    settings = etcd.settings()
    port = int(settings.peers[0].rsplit(":", 1)[1])
    async with FreezingRelay(port) as relay:
        both = dataclasses.replace(settings, peers=[f"http://127.0.0.1:{relay.port}",
                                                    *settings.peers])
        async with (await EtcdBackend.open(both, clock=clock) as watching,
                    await EtcdBackend.open(settings, clock=clock) as writer,
                    watching.watch([b"/k/"]) as watcher):
            await writer.put(Item(b"/k/0", b"before"))
            assert summary(await take(watcher, 1)) == [("put", b"/k/0", b"before")]
            relay.freeze(new_too=True)
            for n in range(1, 4):
                await writer.put(Item(b"/k/%d" % n, b"while hung"))
            got = [await asyncio.wait_for(anext(watcher), 15) for _ in range(3)]
            assert summary(got) == [("put", b"/k/%d" % n, b"while hung") for n in range(1, 4)]
