"""A leaf's inventory push (tunnel/inventorysend.py) over a real loopback tunnel: whole
at first, not again while nothing changed, again once something did."""

from __future__ import annotations

import json

from gatehouse.clock import FakeMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.tunnel.inventorysend import InventorySender
from gatehouse.tunnel.mux import MuxStream, read_all
from gatehouse.types.inventory import LeafInventory, RoleSelection
from tests.tunnel.loopback import sessions


class Source:
    def __init__(self) -> None:
        self.now = LeafInventory(roles=[RoleSelection(name="access", allow={"*": "*"})])
        self.asked: list[str] = []

    async def inventory(self, root: str) -> LeafInventory:
        self.asked.append(root)
        return self.now


async def test_the_inventory_is_pushed_when_it_changed_only() -> None:
    received: list[LeafInventory] = []
    refuse = False

    async def root_side(stream: MuxStream) -> None:  # the root's tunnel server, in short
        assert stream.meta == {"kind": "inventory"}
        stream.accept()
        body = await read_all(stream, 1 << 20)
        received.append(LeafInventory.model_validate_json(body))
        await stream.write(json.dumps({"error": "no"} if refuse else {}).encode())
        stream.write_eof()

    clock = FakeMonotonic()
    leaf, root, server = await sessions(root_side, clock)  # the leaf dials, as it does
    source = Source()
    sender = InventorySender(source, "root.example.com", clock)
    try:
        sent = await sender.push(leaf, b"")
        assert len(received) == 1 and received[0] == source.now
        assert await sender.push(leaf, sent) == sent and len(received) == 1  # unchanged
        source.now = source.now.model_copy(update={"roles": []})
        assert await sender.push(leaf, sent) != sent and received[-1].roles == []
        refuse = True
        source.now = LeafInventory()
        try:
            await sender.push(leaf, sent)
        except ConnectionProblem as exc:
            assert "the root refused the inventory: no" in str(exc)
        else:
            raise AssertionError("a refused push was taken as done")
        assert source.asked == ["root.example.com"] * 4
    finally:
        leaf.close("done")
        root.close("done")
        server.close()
