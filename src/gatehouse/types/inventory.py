"""A leaf's inventory, as its proxy pushes it to a root over its tunnel: its nodes, and
what the root needs to show each root user only the nodes the leaf itself would (the
role map for that root, and each leaf role's node_labels)."""

from __future__ import annotations

from pydantic import Field

from gatehouse.types.node import Node
from gatehouse.types.resource import Model, Name
from gatehouse.types.role import SelectorValue
from gatehouse.types.trusted_cluster import RoleMapping

__all__ = ["LeafInventory", "RoleSelection"]


class RoleSelection(Model):
    """Which nodes a leaf role selects (allow) and takes away (deny)."""

    name: Name
    allow: dict[str, SelectorValue] = Field(default_factory=dict)
    deny: dict[str, SelectorValue] = Field(default_factory=dict)


class LeafInventory(Model):
    nodes: list[Node] = Field(default_factory=list)
    role_map: list[RoleMapping] = Field(default_factory=list)  # this root's, on the leaf
    roles: list[RoleSelection] = Field(default_factory=list)  # every role of the leaf
