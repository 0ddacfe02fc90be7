"""Resources as validated models (no I/O): users, roles, tokens, nodes, CAs, trust."""

from gatehouse.types.cert_authority import CertAuthority, CertAuthoritySpec, CertAuthorityType
from gatehouse.types.cluster_name import ClusterName, ClusterNameSpec
from gatehouse.types.node import Node, NodeSpec, NodeStatus
from gatehouse.types.pattern import Pattern, compile_pattern, is_regex, match_pattern
from gatehouse.types.proxy import Proxy, ProxySpec, ProxyStatus
from gatehouse.types.remote_cluster import RemoteCluster, RemoteClusterSpec, RemoteClusterStatus
from gatehouse.types.resource import (
    Duration,
    HostPort,
    Metadata,
    Model,
    Name,
    Resource,
    format_duration,
    parse_duration,
    split_host_port,
)
from gatehouse.types.role import (
    RULE_RESOURCES,
    RULE_VERBS,
    WILDCARD,
    Role,
    RoleConditions,
    RoleOptions,
    RoleSpec,
    Rule,
    access_role,
    auditor_role,
    editor_role,
    preset_roles,
)
from gatehouse.types.template import Template, parse_template
from gatehouse.types.token import TOKEN_TYPES, Token, TokenMetadata, TokenSpec, TokenType
from gatehouse.types.trusted_cluster import RoleMapping, TrustedCluster, TrustedClusterSpec
from gatehouse.types.user import User, UserSpec
from gatehouse.types.yaml_io import (
    KIND_ALIASES,
    KINDS,
    canonical_kind,
    dump_yaml,
    from_json_obj,
    parse_resources,
    to_json_obj,
)

__all__ = [
    "KINDS",
    "KIND_ALIASES",
    "RULE_RESOURCES",
    "RULE_VERBS",
    "TOKEN_TYPES",
    "WILDCARD",
    "CertAuthority",
    "CertAuthoritySpec",
    "CertAuthorityType",
    "ClusterName",
    "ClusterNameSpec",
    "Duration",
    "HostPort",
    "Metadata",
    "Model",
    "Name",
    "Node",
    "NodeSpec",
    "NodeStatus",
    "Pattern",
    "Proxy",
    "ProxySpec",
    "ProxyStatus",
    "RemoteCluster",
    "RemoteClusterSpec",
    "RemoteClusterStatus",
    "Resource",
    "Role",
    "RoleConditions",
    "RoleMapping",
    "RoleOptions",
    "RoleSpec",
    "Rule",
    "Template",
    "Token",
    "TokenMetadata",
    "TokenSpec",
    "TokenType",
    "TrustedCluster",
    "TrustedClusterSpec",
    "User",
    "UserSpec",
    "access_role",
    "auditor_role",
    "canonical_kind",
    "compile_pattern",
    "dump_yaml",
    "editor_role",
    "format_duration",
    "from_json_obj",
    "is_regex",
    "match_pattern",
    "parse_duration",
    "parse_resources",
    "parse_template",
    "preset_roles",
    "split_host_port",
    "to_json_obj",
]
