"""The root proxy's inventory of its leaves (proxy/inventory.py): a leaf pushes only its
own nodes, a leaf whose tunnel is gone is forgotten, and a user sees only the leaves the
root's cluster labels let them reach, as the leaf's role map shows them there."""

from __future__ import annotations

import json

import pytest

from gatehouse.errors import BadParameter
from gatehouse.pki.x509 import Identity
from gatehouse.proxy.inventory import Inventories
from gatehouse.types.inventory import LeafInventory, RoleSelection
from gatehouse.types.node import Node, NodeSpec
from gatehouse.types.resource import Metadata
from gatehouse.types.trusted_cluster import RoleMapping


def pushed(leaf: str, *hostnames: str, cluster: str = "") -> bytes:
    return LeafInventory(
        nodes=[Node(metadata=Metadata(name=f"{leaf}-{h}", labels={"env": "prod"}),
                    spec=NodeSpec(hostname=h, addr="10.0.0.1:22", cluster=cluster or leaf,
                                  host_id=f"{leaf}-{h}")) for h in hostnames],
        role_map=[RoleMapping(remote="access", local=["access"])],
        roles=[RoleSelection(name="access", allow={"*": "*"})]).model_dump_json().encode()


def user(*roles: str) -> Identity:
    return Identity(kind="user", name="alice", cluster="root", roles=roles, logins=("root",))


def test_a_leaf_may_push_only_its_own_nodes() -> None:
    held = Inventories(lambda: ["leaf-a"])
    with pytest.raises(BadParameter, match="leaf leaf-a may push only its own nodes, not "
                                           "those of leaf-b"):
        held.put("leaf-a", pushed("leaf-a", "web1", cluster="leaf-b"))
    with pytest.raises(ValueError):
        held.put("leaf-a", b'{"nodes": 3}')
    assert held.leaves() == []


def test_the_query_filters_by_reach_role_map_and_search() -> None:
    up = ["leaf-a", "leaf-b"]
    held = Inventories(lambda: up)
    held.put("leaf-a", pushed("leaf-a", "web1", "db1"))
    held.put("leaf-b", pushed("leaf-b", "web1"))

    def found(me: Identity, search: str = "", barred: str = "") -> list[tuple[str, str]]:
        return [(n["spec"]["cluster"], n["spec"]["hostname"]) for n in json.loads(held.find(
            me, lambda _, leaf: "labels" if leaf == barred else "", search, {}))]

    assert found(user("access")) == [("leaf-a", "web1"), ("leaf-a", "db1"),
                                     ("leaf-b", "web1")]
    assert found(user("access"), barred="leaf-a") == [("leaf-b", "web1")]
    assert found(user("access"), search="DB") == [("leaf-a", "db1")]
    assert found(user("auditor")) == []  # no leaf maps it
    up.remove("leaf-b")  # its tunnel went: its nodes with it
    assert found(user("access")) == [("leaf-a", "web1"), ("leaf-a", "db1")]
    assert held.leaves() == ["leaf-a"]
