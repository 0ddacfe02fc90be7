"""Finding nodes across clusters (pure): which of a leaf's nodes a root user sees in the
inventory the leaf pushed (the leaf's own rule: its role map for the root user's
certificate roles, then rbac.can_see_node), which match a search, and what a node name
typed without a cluster means."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from gatehouse import rbac, rolemap
from gatehouse.errors import BadParameter, NotFound
from gatehouse.types.inventory import LeafInventory
from gatehouse.types.node import Node
from gatehouse.types.resource import Metadata
from gatehouse.types.role import Role, RoleConditions, RoleSpec

__all__ = ["matches", "pick", "visible"]


def visible(inventory: LeafInventory, cert_roles: Iterable[str]) -> list[Node]:
    """The leaf's nodes a root user holding ``cert_roles`` may see there: none when the
    role map gives them no role (deny by default)."""
    existing = {r.name: r for r in inventory.roles}
    mapped = rolemap.map_roles(inventory.role_map, cert_roles, existing)
    if not mapped.roles:
        return []
    roles = [Role(metadata=Metadata(name=name), spec=RoleSpec(
        allow=RoleConditions(node_labels=existing[name].allow),
        deny=RoleConditions(node_labels=existing[name].deny))) for name in mapped.roles]
    return [n for n in inventory.nodes if rbac.can_see_node(roles, n.metadata.labels)]


def matches(node: Node, search: str, labels: Mapping[str, str]) -> bool:
    """Whether ``node`` has every label of ``labels`` (exact values, as `gsh ls` filters)
    and ``search`` (case-insensitive) in its name, host id, address or a label
    (``key=value``)."""
    have = node.metadata.labels
    if any(have.get(k) != v for k, v in labels.items()):
        return False
    if not search:
        return True
    needle = search.casefold()
    spec = node.spec
    fields = [spec.hostname, node.metadata.name, spec.addr,
              *(f"{k}={v}" for k, v in have.items())]
    return any(needle in f.casefold() for f in fields)


def pick(candidates: Sequence[Node], name: str) -> Node:
    """The one node of ``candidates`` named ``name`` (its hostname or host id); NotFound
    when none is, BadParameter naming the clusters when several are."""
    found = [n for n in candidates if name in (n.spec.hostname, n.metadata.name)]
    if not found:
        raise NotFound(f"node {name} was not found in any cluster you can reach")
    if len(found) > 1:
        where = sorted({n.spec.cluster for n in found})
        if len(where) == 1:  # several nodes of one cluster have that hostname
            raise BadParameter(f"{name} names {len(found)} nodes in {where[0]}: give a host "
                               "id (`gsh ls --all --search=NAME` lists them)")
        listed = ", ".join(where[:-1]) + " and " + where[-1]
        raise BadParameter(f"{name} in {listed}: give --cluster=CLUSTER to choose one")
    return found[0]
