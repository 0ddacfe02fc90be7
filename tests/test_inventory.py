"""Finding nodes across clusters (gatehouse.inventory): what a root user sees of a
leaf's pushed inventory, what a search matches, and what a bare node name means."""

from __future__ import annotations

import pytest

from gatehouse import inventory
from gatehouse.errors import BadParameter, NotFound
from gatehouse.types.inventory import LeafInventory, RoleSelection
from gatehouse.types.node import Node, NodeSpec
from gatehouse.types.resource import Metadata
from gatehouse.types.trusted_cluster import RoleMapping


def node(hostname: str, cluster: str = "leaf-a", addr: str = "10.0.0.7:3022",
         **labels: str) -> Node:
    return Node(metadata=Metadata(name=f"id-{hostname}-{cluster}", labels=labels),
                spec=NodeSpec(hostname=hostname, addr=addr, cluster=cluster,
                              host_id=f"id-{hostname}-{cluster}"))


LEAF = LeafInventory(
    nodes=[node("web1", env="prod"), node("db1", env="prod", team="db"),
           node("dev1", env="dev")],
    role_map=[RoleMapping(remote="admin", local=["ops"]),
              RoleMapping(remote="^team-(.*)$", local=["$1"])],
    roles=[RoleSelection(name="ops", allow={"*": "*"}, deny={"team": "db"}),
           RoleSelection(name="dev", allow={"env": "dev"})])


def names(nodes: list[Node]) -> list[str]:
    return [n.spec.hostname for n in nodes]


def test_a_root_user_sees_what_the_leafs_role_map_and_roles_select() -> None:
    assert names(inventory.visible(LEAF, ["admin"])) == ["web1", "dev1"]  # deny wins
    assert names(inventory.visible(LEAF, ["team-dev"])) == ["dev1"]
    assert names(inventory.visible(LEAF, ["admin", "team-dev"])) == ["web1", "dev1"]


def test_nothing_mapped_or_a_missing_role_shows_nothing() -> None:
    assert inventory.visible(LEAF, ["auditor"]) == []
    assert inventory.visible(LEAF, ["team-payments"]) == []  # maps to a role the leaf lacks
    assert inventory.visible(LEAF, []) == []


def test_search_finds_name_host_id_address_and_labels_case_insensitively() -> None:
    web = node("Web1", addr="10.1.2.3:22", env="prod")
    for text in ("web", "WEB1", "id-web1", "10.1.2", "env=prod", "prod", ""):
        assert inventory.matches(web, text, {}), text
    for text in ("db", "env=dev", "10.9"):
        assert not inventory.matches(web, text, {}), text


def test_label_filters_are_exact_and_combine_with_search() -> None:
    web = node("web1", env="prod", team="web")
    assert inventory.matches(web, "", {"env": "prod", "team": "web"})
    assert not inventory.matches(web, "", {"env": "pro"})
    assert not inventory.matches(web, "", {"region": ""})
    assert not inventory.matches(web, "db", {"env": "prod"})


def test_a_unique_name_picks_its_node_by_hostname_or_host_id() -> None:
    found = [node("node7", "us-east-1a"), node("node70", "us-east-1b")]
    assert inventory.pick(found, "node7").spec.cluster == "us-east-1a"
    assert inventory.pick(found, "id-node70-us-east-1b").spec.cluster == "us-east-1b"


def test_a_name_in_several_clusters_names_them() -> None:
    found = [node("node7", "us-east-1b"), node("node7", "us-east-1a")]
    with pytest.raises(BadParameter, match=r"^node7 in us-east-1a and us-east-1b: "
                                           r"give --cluster"):
        inventory.pick(found, "node7")


def test_a_name_twice_in_one_cluster_asks_for_a_host_id() -> None:
    twins = [node("node7", "us-east-1a"),
             node("node7", "us-east-1a").model_copy(update={
                 "metadata": Metadata(name="other-id")})]
    with pytest.raises(BadParameter, match="names 2 nodes in us-east-1a: give a host id"):
        inventory.pick(twins, "node7")


def test_no_such_name_is_not_found() -> None:
    with pytest.raises(NotFound, match="node node7 was not found"):
        inventory.pick([node("node70")], "node7")
