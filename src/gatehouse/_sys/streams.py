"""Byte pumps between asyncio streams, with back-pressure and half-close."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["PUMP_CHUNK", "pump", "splice"]

PUMP_CHUNK = 256 * 1024


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the writer, or close it where TLS cannot half-close."""
    try:
        while data := await reader.read(PUMP_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.transport.is_closing():
            return  # e.g. a pipe whose reader went: uvloop closed it (no EOF to send)
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
    except (ConnectionError, OSError):
        writer.close()


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Copy both ways until both directions end, then close both."""
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump(a[0], b[1]))
            tg.create_task(pump(b[0], a[1]))
    finally:
        for w in (a[1], b[1]):
            w.close()
        for w in (a[1], b[1]):
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()
