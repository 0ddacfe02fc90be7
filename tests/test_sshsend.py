"""LeanSends and CorkedTransport: OpenSSH's own client gets no empty IGNORE before each
packet under AES-GCM (and still does under a non-AEAD cipher); writes of one loop turn
leave together, and nothing waiting is lost or reordered by write_eof, close or abort."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from gatehouse._sys.sshsend import CorkedTransport, LeanSends

OUTPUT = 1_000_000  # bytes: about 31 packets of OpenSSH's 32 KiB


class LeanConnection(LeanSends, asyncssh.SSHServerConnection):
    pass


async def _write_output(process: asyncssh.SSHServerProcess[bytes]) -> None:
    process.stdout.write(b"x" * OUTPUT)
    process.exit(0)


async def _ignores_received(tmp_path: Path, connection: type[asyncssh.SSHServerConnection],
                            cipher: str) -> int:
    """OpenSSH's ssh -vvv runs a command on a server built on ``connection``; the number
    of SSH_MSG_IGNORE (type 2) packets it received, once the whole output came."""
    host, user = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    user.write_private_key(tmp_path / "id")
    (tmp_path / "id").chmod(0o600)
    loop = asyncio.get_running_loop()
    options = asyncssh.SSHServerConnectionOptions(
        server_host_keys=[host], authorized_client_keys=asyncssh.import_authorized_keys(
            user.export_public_key().decode()),
        process_factory=_write_output, encoding=None)
    server = await loop.create_server(lambda: connection(loop, options), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ssh = await asyncio.create_subprocess_exec(
            "ssh", "-vvv", "-F", "/dev/null", "-p", str(port), "-i", str(tmp_path / "id"),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", f"Ciphers={cipher}", "tester@127.0.0.1", "out",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(ssh.communicate(), 30)
    finally:
        server.close()
    assert ssh.returncode == 0 and out == b"x" * OUTPUT, err.decode(errors="replace")[-500:]
    return len(re.findall(rb"receive packet: type 2\s*$", err, re.MULTILINE))


@pytest.mark.parametrize(("connection", "cipher", "sent"), [
    (asyncssh.SSHServerConnection, "aes128-gcm@openssh.com", True),  # asyncssh as it comes
    (LeanConnection, "aes128-gcm@openssh.com", False),
    (LeanConnection, "chacha20-poly1305@openssh.com", False),
    (LeanConnection, "aes128-ctr", True),  # not AEAD: the IGNORE stays
])
async def test_the_empty_ignore_before_each_packet_is_left_out_only_under_aead(
        tmp_path: Path, connection: type[asyncssh.SSHServerConnection], cipher: str,
        sent: bool) -> None:
    ignores = await _ignores_received(tmp_path, connection, cipher)
    if sent:
        assert ignores > OUTPUT // 32768  # one before each data packet, and more
    else:
        assert ignores == 0


class Inner(asyncio.Transport):
    """A transport that keeps what it is asked to do, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", [bytes(d) for d in list_of_data]))

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def close(self) -> None:
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


async def test_the_writes_of_one_loop_turn_leave_in_one_call_on_the_next() -> None:
    inner = Inner()
    corked = CorkedTransport(inner)
    corked.write(b"a")
    corked.writelines([b"bb", b"", b"ccc"])
    assert inner.calls == []
    assert corked.get_write_buffer_size() == 6
    await asyncio.sleep(0)
    assert inner.calls == [("writelines", [b"a", b"bb", b"ccc"])]
    corked.write(b"d")
    await asyncio.sleep(0)
    assert inner.calls[1:] == [("writelines", [b"d"])]


@pytest.mark.parametrize("end", ["write_eof", "close", "abort"])
async def test_an_end_sends_what_waits_first(end: str) -> None:
    inner = Inner()
    corked = CorkedTransport(inner)
    corked.write(b"last words")
    getattr(corked, end)()
    assert inner.calls == [("writelines", [b"last words"]), (end, None)]
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert len(inner.calls) == 2


@asynccontextmanager
async def _received() -> AsyncIterator[tuple[asyncio.Transport, asyncio.Future[bytes]]]:
    """A corked client transport of a loopback connection, and what its server reads
    until EOF."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.set_result(await reader.read())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        yield CorkedTransport(writer.transport), got  # type: ignore[arg-type]
    finally:
        server.close()


async def test_a_socket_gets_every_write_in_order_then_eof() -> None:
    async with _received() as (corked, got):
        chunks = [bytes([i]) * (i * 1000 + 1) for i in range(50)]
        reused = bytearray(chunks[0])
        corked.write(reused)
        reused[:] = b"x" * len(reused)  # the caller's buffer, reused at once
        for chunk in chunks[1:25]:
            corked.write(chunk)
        await asyncio.sleep(0)
        for chunk in chunks[25:]:
            corked.write(chunk)
        corked.close()
        assert await asyncio.wait_for(got, 10) == b"".join(chunks)
