"""The HTTP side of the etcd backend: JSON calls to etcd's gateway to its v3 API,
tried on each peer in turn while none answers, with etcd's errors as Gatehouse kinds.

A call that reached a peer and got no answer (a timeout, a dropped connection) goes on
to the next peer if it is a read; any other fails, as it may have been applied. Either
way the calls after it go to the next peer first: a peer that hangs (accepting
connections, answering nothing) is asked once, not at every call."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from gatehouse.errors import BadParameter, ConnectionProblem, GatehouseError

__all__ = ["CALL_TIMEOUT", "EtcdSettings", "Gateway", "b64", "unb64"]

CALL_TIMEOUT = 10.0  # seconds for one gateway call
_READS = frozenset({"/v3/kv/range"})  # calls that change nothing: safe to send again


@dataclass(frozen=True)
class EtcdSettings:
    """Where the etcd cluster is and how to reach it (gatehouse.storage with type etcd,
    which config.py checks: URLs, a prefix like /gatehouse/CLUSTER, cert with key)."""

    peers: Sequence[str]
    prefix: str
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not any(p.startswith("https://") for p in self.peers):
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file is not None and self.tls_key_file is not None:
                ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise BadParameter(f"etcd storage TLS files: {exc}") from exc
        return ctx


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class Gateway:
    """JSON calls to the first etcd peer that answers; errors become Gatehouse kinds."""

    def __init__(self, settings: EtcdSettings) -> None:
        self._peers = [p.rstrip("/") for p in settings.peers]
        self._ssl = settings.ssl_context()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
            connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True))
        self._current = 0

    async def close(self) -> None:
        await self._session.close()

    def skip_peer(self, peer: str) -> None:
        """Try the next peer first from now on: ``peer`` did not answer. Only if it is
        still the first: calls that failed together move on once, not back round."""
        if self._peers[self._current] == peer:
            self._current = (self._current + 1) % len(self._peers)

    @property
    def first_peer(self) -> str:
        """The peer the next call tries first."""
        return self._peers[self._current]

    def _peer_order(self) -> list[str]:
        return self._peers[self._current:] + self._peers[:self._current]

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        problems: list[str] = []
        for peer in self._peer_order():
            try:
                async with self._session.post(peer + path, json=body) as resp:
                    answer = await resp.json(content_type=None)
            except aiohttp.ClientConnectorError as exc:  # not sent: another peer may do
                problems.append(f"{peer}: {_reason(exc)}")
                self.skip_peer(peer)
                continue
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.skip_peer(peer)  # the calls after this one try the next peer first
                if path in _READS:  # changes nothing: the next peer may answer it
                    problems.append(f"{peer}: {_describe(exc)}")
                    continue
                raise ConnectionProblem(f"etcd {peer}{path}: {_describe(exc)}") from exc
            if not isinstance(answer, dict):
                raise ConnectionProblem(f"etcd {peer}{path}: unexpected answer {answer!r:.80}")
            if "error" in answer or resp.status != 200:
                raise _error(peer, path, answer)
            return answer
        raise ConnectionProblem(f"etcd unreachable ({'; '.join(problems)})")

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[
            AsyncIterator[dict[str, Any]]]:
        """A streaming call (the watch): yields the JSON messages as they come."""
        peer = self.first_peer
        try:
            # The answer's head within CALL_TIMEOUT (a hung peer sends none); then the
            # stream is open-ended, its silences the caller's to judge. (A timeout scope,
            # not wait_for: on 3.11 wait_for can swallow a cancellation that comes as the
            # answer does, and the backend's close() cancels this once.)
            async with asyncio.timeout(CALL_TIMEOUT):
                resp = await self._session.post(peer + path, json=body,
                                                timeout=aiohttp.ClientTimeout(total=None))
        except aiohttp.ClientConnectorError as exc:
            self.skip_peer(peer)
            raise ConnectionProblem(f"etcd unreachable ({peer}: {_reason(exc)})") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.skip_peer(peer)
            raise ConnectionProblem(f"etcd {peer}{path}: {_describe(exc)}") from exc
        try:
            async with resp:
                if resp.status != 200:
                    raise _error(peer, path, await resp.json(content_type=None))
                yield _messages(resp)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ConnectionProblem(f"etcd {peer}{path}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    """Why a connection failed, without aiohttp's wrapping ("Connection refused")."""
    os_error = getattr(exc, "os_error", None)  # absent from certificate errors
    return getattr(os_error, "strerror", None) or _describe(exc)


def _error(peer: str, path: str, answer: object) -> GatehouseError:
    message = answer.get("message", answer) if isinstance(answer, dict) else answer
    code = answer.get("code") if isinstance(answer, dict) else None
    text = f"etcd {peer}{path}: {message}"
    if code == 3:  # INVALID_ARGUMENT: too many operations, a request too large
        return BadParameter(text)
    if code in (7, 16):  # PERMISSION_DENIED, UNAUTHENTICATED
        return ConnectionProblem(text + " (check the etcd credentials)")
    return ConnectionProblem(text)


async def _messages(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Newline-separated JSON objects of a gateway stream (values may be large)."""
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError(f"unexpected message {message!r:.80}")
                yield message
    raise ConnectionProblem("etcd ended the watch stream")
