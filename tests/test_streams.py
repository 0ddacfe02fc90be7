"""The byte pumps, on uvloop as gsh runs them."""

from __future__ import annotations

import asyncio
import os

import uvloop

from gatehouse._sys.streams import pump


def test_a_pump_to_a_pipe_its_reader_closed_ends_quietly() -> None:
    # `gsh proxy ssh` under scp: ssh closes the ProxyCommand's stdout when it is done,
    # and the stream from the node ends a moment later.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        read_end, write_end = os.pipe()
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(write_end, "wb", 0))
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        os.close(read_end)
        for _ in range(100):  # until the loop has seen the reader go (bounded: 1 s)
            if transport.is_closing():
                break
            await asyncio.sleep(0.01)
        reader = asyncio.StreamReader()
        reader.feed_eof()
        await asyncio.wait_for(pump(reader, writer), 5)

    uvloop.run(main())
