"""Resources to and from YAML files and JSON objects, with one-line errors.

An error names the resource (its position in the file and its kind), the field
path and what was wrong, e.g. ``resource 2 (role): unknown field spec.alow``.
Whatever the text, the only error is BadParameter: nesting is capped at MAX_DEPTH
(PyYAML's composer recurses once per level), and a scalar PyYAML's constructors fail on
(2001-02-30, an int of 4300 digits, an empty "!!int") is a YAML error with a line
number. Aliases are shared, not copied, so they cannot multiply memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from gatehouse.errors import BadParameter
from gatehouse.types.cert_authority import CertAuthority
from gatehouse.types.cluster_name import ClusterName
from gatehouse.types.node import Node
from gatehouse.types.oidc import OIDCConnector
from gatehouse.types.problems import describe_problems
from gatehouse.types.proxy import Proxy
from gatehouse.types.remote_cluster import RemoteCluster
from gatehouse.types.resource import Resource
from gatehouse.types.role import Role
from gatehouse.types.token import Token
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.user import User

__all__ = [
    "KINDS",
    "KIND_ALIASES",
    "MAX_DEPTH",
    "canonical_kind",
    "dump_yaml",
    "from_json_obj",
    "load_document",
    "parse_resources",
    "to_json_obj",
]

KINDS: Mapping[str, type[Resource]] = {
    cls.model_fields["kind"].default: cls
    for cls in (User, Role, Token, Node, CertAuthority, ClusterName, TrustedCluster, RemoteCluster,
                Proxy, OIDCConnector)
}
KIND_ALIASES: Mapping[str, str] = {
    "rc": "remote_cluster",
    "ca": "cert_authority",
    "cas": "cert_authority",
    "cert_authorities": "cert_authority",
    "proxies": "proxy",
    **{f"{kind}s": kind for kind in KINDS if kind not in ("cert_authority", "proxy")},
}
_ENVELOPE = ("kind", "version", "metadata", "spec", "status")
MAX_DEPTH = 64  # nested collections in a resource file; a role needs five


def canonical_kind(name: str) -> str:
    """The kind that ``name`` (a kind, an alias such as ``rc``, or a plural) stands for."""
    key = name.strip().lower().replace("-", "_")
    kind = KIND_ALIASES.get(key, key)
    if kind not in KINDS:
        raise BadParameter(f"unknown kind {name!r}: expected one of {', '.join(sorted(KINDS))}")
    return kind


def from_json_obj(obj: object, *, where: str = "resource") -> Resource:
    """The resource that a decoded YAML/JSON mapping describes; ``where`` prefixes errors."""
    if not isinstance(obj, dict):
        raise BadParameter(
            f"{where}: expected a mapping with kind, version, metadata and spec, "
            f"got {type(obj).__name__}"
        )
    kind = obj.get("kind")
    if kind is None:
        raise BadParameter(f"{where}: missing field kind")
    if not isinstance(kind, str):
        raise BadParameter(f"{where}: kind must be a string, got {kind!r}")
    try:
        canonical = canonical_kind(kind)
    except BadParameter as exc:
        raise BadParameter(f"{where}: {exc}") from None
    try:
        return KINDS[canonical].model_validate({**obj, "kind": canonical})
    except ValidationError as exc:
        raise BadParameter(f"{where} ({canonical}): {describe_problems(exc)}") from None


def parse_resources(text: str) -> list[Resource]:
    """Every resource in ``text``, YAML documents separated by ``---`` (empty ones skipped)."""
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise BadParameter(_describe_yaml(exc)) from None
    return [
        from_json_obj(doc, where=f"resource {number}")
        for number, doc in enumerate(documents, start=1)
        if doc is not None
    ]


def load_document(text: str) -> object:
    """The one YAML document in ``text``, read in this module's dialect (no duplicate
    keys, bounded nesting); BadParameter with its line and column otherwise."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise BadParameter(_describe_yaml(exc)) from None


def to_json_obj(resource: Resource) -> dict[str, Any]:
    """A JSON-able dict shaped like the YAML: kind, version, metadata, spec, status."""
    data = resource.model_dump(mode="json")
    return {key: data.get(key) for key in _ENVELOPE}


def dump_yaml(resources: Iterable[Resource]) -> str:
    """YAML documents separated by ``---`` that ``parse_resources`` reads back (no null status)."""
    docs = []
    for resource in resources:
        obj = to_json_obj(resource)
        if obj["status"] is None:
            del obj["status"]
        docs.append(obj)
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


# --- error messages -----------------------------------------------------------------------


def _describe_yaml(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f"invalid YAML: {exc}"


# --- YAML dialect -------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one),
    nesting past MAX_DEPTH, and scalars its constructors cannot build."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None,
                                                  f"nested deeper than {MAX_DEPTH}", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            # PyYAML's scalar constructors fail as their parsing does: ValueError for
            # 2001-02-30, IndexError for "!!int ", AttributeError for "!!timestamp x"...
            what = f"invalid {node.tag.rsplit(':', 1)[-1]} {str(node.value)[:40]!r}"
            raise yaml.constructor.ConstructorError(None, None, f"{what}: {exc}",
                                                    node.start_mark) from None


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (PEM certificates) as ``|`` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    if any(c in value for c in "\x85\u2028\u2029"):
        # Unicode line breaks: PyYAML writes them raw in other styles and then reads
        # "0\x850" back as "0 0"; double quotes escape them (\N, \L, \P).
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
