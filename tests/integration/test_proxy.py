"""The proxy's SSH path refuses connections that carry no user certificate."""

from __future__ import annotations

import json
import socket
import ssl
import time

from gatehouse.process.harness import Cluster

ALPN_SSH = "gatehouse-ssh/1"


def _dial_without_certificate(cluster: Cluster, line: bytes) -> tuple[str | None, bytes]:
    """TLS to the proxy with ALPN gatehouse-ssh/1 and no client certificate; the reply line."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([ALPN_SSH])
    with socket.create_connection(("127.0.0.1", cluster.proxy_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        alpn = tls.selected_alpn_protocol()
        tls.sendall(line)
        reply = b""
        deadline = time.monotonic() + 10
        while b"\n" not in reply and time.monotonic() < deadline:
            chunk = tls.recv(4096)
            if not chunk:
                break
            reply += chunk
        rest = b""
        if b"\n" in reply:
            try:  # after a refusal the proxy closes: nothing else may follow
                rest = tls.recv(4096)
            except (ssl.SSLError, OSError):
                rest = b""
    return alpn, reply + rest


def test_dial_without_certificate_is_refused(cluster: Cluster) -> None:
    alpn, data = _dial_without_certificate(
        cluster, b'{"target":"node1","cluster":"","port":0}\n')
    assert alpn == ALPN_SSH
    line, _, rest = data.partition(b"\n")
    reply = json.loads(line)
    assert reply["ok"] is False
    assert "certificate" in reply["error"], reply
    assert rest == b"", data  # no SSH banner from the node leaked through
    event = cluster.wait_event("a proxy.dial.denied event",
                               lambda e: e["event"] == "proxy.dial.denied"
                               and "certificate" in e["message"])
    assert event["code"] == "TP001W"


def test_dial_to_an_address_without_certificate_is_refused(cluster: Cluster) -> None:
    _, data = _dial_without_certificate(
        cluster, f'{{"target":"127.0.0.1:{cluster.ssh_port}","cluster":"","port":0}}\n'.encode())
    reply = json.loads(data.partition(b"\n")[0])
    assert reply["ok"] is False and "certificate" in reply["error"], reply
    assert b"SSH-2.0" not in data
