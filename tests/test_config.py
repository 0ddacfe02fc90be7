"""Tests for gatehouse.config: the YAML file, its checks and its defaults."""

from __future__ import annotations

import ipaddress
import socket
import textwrap
from pathlib import Path
from typing import get_args

import pytest

from gatehouse.backend import KINDS
from gatehouse.config import (
    DEFAULT_AUTH_ADDR,
    DEFAULT_PROXY_ADDR,
    DEFAULT_SSH_ADDR,
    Config,
    SSHSection,
    StorageType,
    load_config,
)
from gatehouse.errors import BadParameter

FULL = """\
version: v1
gatehouse:
  nodename: node1
  data_dir: /var/lib/gatehouse
  join_token: abc
  proxy_server: 10.0.0.5:3080
  storage: {type: sqlite, path: /var/lib/gatehouse/db.sqlite}
auth_service:
  enabled: true
  cluster_name: sso.example.com
  listen_addr: 127.0.0.1:3025
proxy_service:
  enabled: true
  listen_addr: 0.0.0.0:3080
  public_addr: sso.example.com:3080
ssh_service:
  enabled: true
  listen_addr: 127.0.0.1:3022
  public_addr: 10.0.0.7:3022
  labels: {env: prod}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gatehouse.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --- load_config --------------------------------------------------------------------------


def test_load_a_full_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.gatehouse.nodename == "node1"
    assert cfg.data_dir == Path("/var/lib/gatehouse")
    assert cfg.gatehouse.join_token == "abc"
    assert cfg.gatehouse.proxy_server == "10.0.0.5:3080"
    assert cfg.gatehouse.storage.path == "/var/lib/gatehouse/db.sqlite"
    assert cfg.auth_service.cluster_name == "sso.example.com"
    assert cfg.proxy_service.public_addr == "sso.example.com:3080"
    assert cfg.ssh_service.labels == {"env": "prod"}
    assert cfg.ssh_service.advertised_addr() == "10.0.0.7:3022"
    assert cfg.enabled_services() == ["auth", "proxy", "ssh"]


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path, "auth_service: {enabled: true}\n"))
    assert cfg.version == "v1"
    assert cfg.gatehouse.nodename == socket.gethostname()
    assert cfg.data_dir == tmp_path / "gatehouse-data"
    assert cfg.gatehouse.storage.type == "sqlite"
    assert cfg.gatehouse.storage.path is None
    assert cfg.auth_service.cluster_name == "gatehouse.local"
    assert cfg.auth_service.listen_addr == DEFAULT_AUTH_ADDR
    assert cfg.proxy_service.listen_addr == DEFAULT_PROXY_ADDR
    assert cfg.ssh_service.listen_addr == DEFAULT_SSH_ADDR
    assert cfg.auth_service.node_address_networks == []  # a node is where it calls from
    assert cfg.enabled_services() == ["auth"]


def test_a_joining_node_needs_no_auth(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """\
        gatehouse: {join_token: abc, auth_server: 10.0.0.5:3025}
        ssh_service: {enabled: true}
    """))
    assert cfg.enabled_services() == ["ssh"]
    assert cfg.gatehouse.auth_server == "10.0.0.5:3025"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus: 1\nauth_service: {enabled: true}\n", "bogus"),
        ("gatehouse: {nodname: n}\nauth_service: {enabled: true}\n", "gatehouse.nodname"),
        ("gatehouse: {storage: {type: sqlite, pth: x}}\nauth_service: {enabled: true}\n",
         "gatehouse.storage.pth"),
        ("auth_service: {enabled: true, cluster: x}\n", "auth_service.cluster"),
        ("auth_service: {enabled: true}\nproxy_service: {public: x}\n", "proxy_service.public"),
        ("auth_service: {enabled: true}\nssh_service: {label: {a: b}}\n", "ssh_service.label"),
        ("auth_service: {enabled: true, limits: {burst: 5}}\n", "auth_service.limits.burst"),
        ("auth_service: {enabled: true}\nproxy_service: {limits: {max_conns: 5}}\n",
         "proxy_service.limits.max_conns"),
    ],
)
def test_unknown_key_names_its_path(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadParameter) as info:
        load_config(path)
    assert str(info.value) == f"{path}: unknown key {key}"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: v2\nauth_service: {enabled: true}\n", "version"),
        ("auth_service: {enabled: maybe}\n", "auth_service.enabled"),
        ("gatehouse: {storage: {type: mysql}}\nauth_service: {enabled: true}\n",
         "gatehouse.storage.type"),
        ("auth_service: {enabled: true}\nssh_service: {labels: {env: [a, b]}}\n",
         "ssh_service.labels.env"),
        ("auth_service: {enabled: true, session_recording: proxy}\n",
         "auth_service.session_recording"),
        ("auth_service: {enabled: true, audit_retention: 0s}\n", "auth_service.audit_retention"),
        ("auth_service: {enabled: true, limits: {attempts_burst: 0}}\n",
         "auth_service.limits.attempts_burst"),
        ("auth_service: {enabled: true}\nproxy_service: {limits: {idle_timeout: 10}}\n",
         "proxy_service.limits.idle_timeout"),
        ("auth_service: {enabled: true}\nproxy_service: {limits: {anonymous_per_source: -1}}\n",
         "proxy_service.limits.anonymous_per_source"),
    ],
)
def test_bad_value_names_its_path(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadParameter, match=rf"^{path}: {where}: "):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("auth_service: {enabled: true, listen_addr: nope}\n", "auth_service.listen_addr"),
        ("auth_service: {enabled: true}\nproxy_service: {public_addr: 'x:99999'}\n",
         "proxy_service.public_addr"),
        ("gatehouse: {proxy_server: ':3080'}\nssh_service: {enabled: true}\n",
         "gatehouse.proxy_server"),
    ],
)
def test_bad_address_is_bad_parameter(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(BadParameter):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("auth_service: {enabled: true, listen_addr: nope}\n", "auth_service.listen_addr"),
        ("gatehouse: {proxy_server: ':3080'}\nssh_service: {enabled: true}\n",
         "gatehouse.proxy_server"),
    ],
)
def test_bad_address_names_the_file_and_the_key(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadParameter, match=rf"^{path}: {where}: "):
        load_config(path)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        version: v1
        auth_service:
          enabled: true
          cluster_name: [unclosed
        proxy_service: {enabled: true}
    """)
    with pytest.raises(BadParameter, match=r"invalid YAML at line \d+, column \d+: ") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    line = int(str(info.value).split(" at line ")[1].split(",")[0])
    assert 4 <= line <= 5


def test_malformed_yaml_tab_indent_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gatehouse.yaml"
    path.write_text("version: v1\nauth_service:\n\tenabled: true\n")
    with pytest.raises(BadParameter, match=r"invalid YAML at line 3, column 1: found character"):
        load_config(path)


@pytest.mark.parametrize(("text", "says"), [
    ("auth_service: {enabled: true}\nauth_service: {enabled: false}\n",
     "invalid YAML at line 2, column 1: duplicate key 'auth_service'"),
    ("auth_service: {enabled: true, cluster_name: 2001-02-30}\n",
     "invalid YAML at line 1, column 45: invalid timestamp '2001-02-30'"),
    ("auth_service: {enabled: true}\nx: " + "[" * 5000 + "]" * 5000 + "\n",
     "invalid YAML at line 2, column "),
])
def test_yaml_a_plain_loader_takes_is_refused_on_one_line(tmp_path: Path, text: str,
                                                          says: str) -> None:
    path = tmp_path / "gatehouse.yaml"
    path.write_text(text)
    with pytest.raises(BadParameter) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {says}"), info.value
    assert "\n" not in str(info.value)


def test_a_config_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gatehouse.yaml"
    path.write_bytes(b"\xff\xfe version: v1\n")
    with pytest.raises(BadParameter, match=r"cannot read config .*: it is not UTF-8 text$"):
        load_config(path)


def test_every_problem_is_listed_with_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        auth_service: {enabled: maybe, session_recording: proxy, limits: [1]}
        proxy_service: {listen: x}
    """)
    with pytest.raises(BadParameter) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: auth_service.enabled: expected true or false, got 'maybe'; "
        "auth_service.session_recording: expected 'node' or 'off', got 'proxy'; "
        "auth_service.limits: expected a mapping, got a list; "
        "unknown key proxy_service.listen")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(BadParameter, match="expected a mapping at the top level"):
        load_config(write(tmp_path, text))


def test_missing_file_is_bad_parameter(tmp_path: Path) -> None:
    with pytest.raises(BadParameter, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "text",
    ["", "version: v1\n", "auth_service: {enabled: false}\nssh_service: {listen_addr: a:1}\n"],
)
def test_no_service_enabled_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(BadParameter, match="no service is enabled"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    ["ssh_service: {enabled: true}\n",
     "proxy_service: {enabled: true}\ngatehouse: {join_token: abc}\n"],
)
def test_without_auth_the_file_must_say_where_to_join(tmp_path: Path, text: str) -> None:
    with pytest.raises(BadParameter, match=r"proxy_server or gatehouse\.auth_server"):
        load_config(write(tmp_path, text))


def test_joining_through_a_proxy_is_enough(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """\
        gatehouse: {proxy_server: sso.example.com:3080}
        proxy_service: {enabled: true}
    """))
    assert cfg.enabled_services() == ["proxy"]


# --- node_address_networks ----------------------------------------------------------------


def test_node_address_networks_are_networks(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """\
        auth_service: {enabled: true, node_address_networks: [10.1.0.0/16, "fd00::/8"]}
    """))
    assert cfg.auth_service.node_address_networks == [ipaddress.ip_network("10.1.0.0/16"),
                                                      ipaddress.ip_network("fd00::/8")]


@pytest.mark.parametrize(("value", "says"), [
    ("[10.1.0.7/16]", "'10.1.0.7/16' is not a network such as 10.1.0.0/16 (10.1.0.7/16 has "
                      "host bits set)"),
    ("[everywhere]", "'everywhere' is not a network such as 10.1.0.0/16"),
])
def test_a_bad_node_address_network_is_named(tmp_path: Path, value: str, says: str) -> None:
    path = write(tmp_path, f"auth_service: {{enabled: true, node_address_networks: {value}}}\n")
    with pytest.raises(BadParameter) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: auth_service.node_address_networks: ")
    assert says in str(info.value)


# --- advertised_addr ----------------------------------------------------------------------


def test_public_addr_wins() -> None:
    svc = SSHSection(listen_addr="0.0.0.0:3022", public_addr="10.0.0.7:2222")
    assert svc.advertised_addr() == "10.0.0.7:2222"


@pytest.mark.parametrize(
    ("listen", "advertised"),
    [
        ("0.0.0.0:3022", "127.0.0.1:3022"),
        ("[::]:3022", "127.0.0.1:3022"),
        ("127.0.0.1:4022", "127.0.0.1:4022"),
        ("10.1.2.3:22", "10.1.2.3:22"),
        ("node1.example.com:3022", "node1.example.com:3022"),
    ],
)
def test_listen_addr_is_advertised_with_wildcards_as_loopback(listen: str, advertised: str
                                                              ) -> None:
    assert SSHSection(listen_addr=listen).advertised_addr() == advertised


def test_default_ssh_service_advertises_its_default_listen_addr() -> None:
    assert SSHSection().advertised_addr() == DEFAULT_SSH_ADDR


# --- single_node --------------------------------------------------------------------------


def test_single_node_enables_the_three_services_on_loopback() -> None:
    cfg = Config.single_node()
    assert cfg.enabled_services() == ["auth", "proxy", "ssh"]
    assert cfg.auth_service.listen_addr == DEFAULT_AUTH_ADDR
    assert cfg.proxy_service.listen_addr == DEFAULT_PROXY_ADDR
    assert cfg.ssh_service.advertised_addr() == DEFAULT_SSH_ADDR
    assert cfg.gatehouse.storage.type == "sqlite"


# --- storage ------------------------------------------------------------------------------


def test_an_unknown_storage_type_is_one_line_naming_field_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "gatehouse: {storage: {type: mysql}}\n"
                           "auth_service: {enabled: true}\n")
    with pytest.raises(BadParameter) as info:
        load_config(path)
    assert str(info.value) == (f"{path}: gatehouse.storage.type: expected 'sqlite', "
                               "'postgres' or 'etcd', got 'mysql'")


def test_postgres_storage_takes_a_conn_string(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "gatehouse: {storage: {type: postgres, conn_string: "
                                      "'postgresql://gh@db.example.com:5432/gh'}}\n"
                                      "auth_service: {enabled: true}\n"))
    assert cfg.gatehouse.storage.type == "postgres"
    assert cfg.gatehouse.storage.conn_string == "postgresql://gh@db.example.com:5432/gh"


@pytest.mark.parametrize(("storage", "line"), [
    ("{type: postgres}", "gatehouse.storage: type postgres needs conn_string "
                         "(postgresql://USER@HOST:PORT/DATABASE)"),
    ("{type: postgres, conn_string: 'db.example.com:5432'}",
     "gatehouse.storage.conn_string: expected a URL such as "
     "postgresql://USER@HOST:PORT/DATABASE"),
    ("{type: postgres, conn_string: 'postgresql://h/d', path: x.db}",
     "gatehouse.storage: path is for type sqlite; postgres does not take it"),
    ("{type: sqlite, conn_string: 'postgresql://h/d'}",
     "gatehouse.storage: conn_string is for type postgres"),
])
def test_storage_settings_must_fit_its_type(tmp_path: Path, storage: str, line: str) -> None:
    path = write(tmp_path, f"gatehouse: {{storage: {storage}}}\nauth_service: {{enabled: true}}\n")
    with pytest.raises(BadParameter) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {line}"


@pytest.mark.parametrize(("storage", "problem"), [
    ("{type: etcd}", "gatehouse.storage: type etcd needs peers: [https://HOST:2379, ...]"),
    ("{type: etcd, peers: [etcd1:2379]}",
     "gatehouse.storage.peers: 'etcd1:2379' is not an http:// or https:// URL"),
    ("{type: etcd, peers: ['https://e:2379'], prefix: gatehouse/}",
     "gatehouse.storage.prefix: 'gatehouse/': expected a path like /gatehouse/CLUSTER "
     "(starting with /, not ending with /)"),
    ("{type: etcd, peers: ['https://e:2379'], tls_cert_file: c.pem}",
     "gatehouse.storage: tls_cert_file and tls_key_file go together"),
    ("{type: etcd, peers: ['https://e:2379'], tls_key: k.pem}",
     "unknown key gatehouse.storage.tls_key"),
    ("{type: postgres, conn_string: 'postgresql://h/db', audit_conn_string: 'postgresql://h/a'}",
     "gatehouse.storage: audit_conn_string is for type etcd (postgres keeps its audit log in "
     "conn_string's database)"),
])
def test_etcd_storage_mistakes_are_one_line(tmp_path: Path, storage: str, problem: str) -> None:
    path = write(tmp_path, f"gatehouse: {{storage: {storage}}}\nauth_service: {{enabled: true}}\n")
    with pytest.raises(BadParameter) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {problem}"


def test_etcd_storage(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """\
        gatehouse:
          storage:
            type: etcd
            peers: ['https://etcd1:2379', 'https://etcd2:2379']
            prefix: /gatehouse/sso.example.com
            tls_ca_file: /etc/gatehouse/etcd-ca.pem
            tls_cert_file: /etc/gatehouse/etcd.pem
            tls_key_file: /etc/gatehouse/etcd-key.pem
            audit_conn_string: postgresql://gatehouse@db.example.com/audit
        auth_service: {enabled: true}
        """))
    storage = cfg.gatehouse.storage
    assert (storage.type, storage.peers, storage.prefix) == (
        "etcd", ["https://etcd1:2379", "https://etcd2:2379"], "/gatehouse/sso.example.com")
    assert storage.audit_conn_string == "postgresql://gatehouse@db.example.com/audit"


def test_every_storage_type_has_a_backend() -> None:
    assert set(get_args(StorageType)) <= set(KINDS)


@pytest.mark.parametrize(("ssh", "tunnel_to"), [
    ("{enabled: true}", "proxy.example.com:3080"),  # no listen_addr: tunnel mode
    ("{enabled: true, labels: {site: berlin}}", "proxy.example.com:3080"),
    ("{enabled: true, listen_addr: '0.0.0.0:3022'}", ""),  # direct, as before
    ("{enabled: true, public_addr: '203.0.113.5:3022'}", ""),
])
def test_a_node_without_listen_addr_joining_a_proxy_runs_on_a_tunnel(
        tmp_path: Path, ssh: str, tunnel_to: str) -> None:
    cfg = load_config(write(tmp_path, f"""\
        gatehouse: {{proxy_server: 'proxy.example.com:3080'}}
        ssh_service: {ssh}
        """))
    assert cfg.node_tunnel() == tunnel_to


def test_a_node_with_its_auth_or_without_a_proxy_is_never_on_a_tunnel(tmp_path: Path) -> None:
    assert Config.single_node().node_tunnel() == ""
    cfg = load_config(write(tmp_path, """\
        gatehouse: {auth_server: 'auth.example.com:3025'}
        ssh_service: {enabled: true}
        """))
    assert cfg.node_tunnel() == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("gatehouse: {auth_servers: ['127.0.0.1:1', nope]}\nssh_service: {enabled: true}\n",
         "gatehouse.auth_servers: "),
        ("gatehouse: {auth_servers: ['127.0.0.1:1', '127.0.0.1:1']}\n"
         "ssh_service: {enabled: true}\n", "listed twice"),
        ("gatehouse: {auth_server: '127.0.0.1:1', auth_servers: ['127.0.0.1:2']}\n"
         "ssh_service: {enabled: true}\n", "two ways of saying the same"),
    ],
)
def test_auth_servers_bad_list_is_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadParameter, match=rf"^{path}: .*{problem}") as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_auth_servers_is_where_a_node_reaches_the_auth(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "gatehouse: {auth_servers: ['127.0.0.1:1', "
                                      "'127.0.0.1:2']}\nssh_service: {enabled: true}\n"))
    assert cfg.gatehouse.auth_addrs() == ["127.0.0.1:1", "127.0.0.1:2"]
