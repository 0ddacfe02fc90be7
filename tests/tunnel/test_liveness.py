"""Tunnel liveness decisions with a fake clock: which tunnels the root pings or drops, when
it reports the tunnels it holds, and the kernel keepalive options on a real socket."""

from __future__ import annotations

import socket

import pytest

from gatehouse.tunnel.liveness import (
    COALESCE,
    HEARTBEAT_INTERVAL,
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
    PING_TIMEOUT,
    REPORT_INTERVAL,
    RETRY,
    USER_TIMEOUT,
    ReportSchedule,
    set_keepalive,
    sweep,
)

T0 = 1000.0  # any monotonic time

# --- which tunnels get a heartbeat ping, which are dropped ---------------------------------


def test_a_tunnel_heard_from_recently_costs_nothing() -> None:
    assert sweep([("a", T0, None)], T0 + HEARTBEAT_INTERVAL - 1) == ([], [])


def test_a_quiet_tunnel_is_pinged_once() -> None:
    assert sweep([("a", T0, None)], T0 + HEARTBEAT_INTERVAL) == (["a"], [])
    pinged = T0 + HEARTBEAT_INTERVAL
    # Not again while the ping is out, however many sweeps pass before its timeout.
    assert sweep([("a", T0, pinged)], pinged + PING_TIMEOUT - 1) == ([], [])


def test_an_answered_ping_counts_as_hearing_from_the_tunnel() -> None:
    pinged = T0 + HEARTBEAT_INTERVAL
    answered = pinged + 0.01
    assert sweep([("a", answered, pinged)], pinged + PING_TIMEOUT) == ([], [])
    assert sweep([("a", answered, pinged)], answered + HEARTBEAT_INTERVAL) == (["a"], [])


def test_an_unanswered_ping_drops_the_tunnel() -> None:
    pinged = T0 + HEARTBEAT_INTERVAL
    assert sweep([("a", T0, pinged)], pinged + PING_TIMEOUT) == ([], ["a"])


def test_one_sweep_sorts_many_tunnels() -> None:
    pinged = T0 - 1
    tunnels = [("busy", T0 + 100, None), ("quiet", T0, None), ("mute", T0 - 10, pinged),
               ("answered", T0, pinged)]
    assert sweep(tunnels, T0 + HEARTBEAT_INTERVAL) == (["quiet", "answered"], ["mute"])


# --- when the root proxy reports the tunnels it holds ------------------------------------


def test_the_first_report_is_due_at_once() -> None:
    assert ReportSchedule(T0).wait(T0) == 0


def test_with_no_change_the_list_is_repeated_every_interval() -> None:
    s = ReportSchedule(T0)
    s.sending(T0)
    assert s.wait(T0) == pytest.approx(REPORT_INTERVAL)
    assert s.wait(T0 + REPORT_INTERVAL) == 0


def test_a_burst_of_changes_makes_one_report_soon() -> None:
    s = ReportSchedule(T0)
    s.sending(T0)
    for i in range(100):  # tunnels coming up within the coalescing delay
        s.changed(T0 + 1 + i * COALESCE / 200)
    assert s.wait(T0 + 1) == pytest.approx(COALESCE)
    assert s.wait(T0 + 1 + COALESCE) == 0
    s.sending(T0 + 1 + COALESCE)
    assert s.wait(T0 + 1 + COALESCE) == pytest.approx(REPORT_INTERVAL)


def test_a_change_while_a_report_is_in_flight_is_reported_next() -> None:
    s = ReportSchedule(T0)
    s.sending(T0)  # the list was taken; the call is on its way...
    s.changed(T0 + 0.1)  # ...when a tunnel drops
    assert s.wait(T0 + 0.1) == pytest.approx(COALESCE)


def test_a_change_never_delays_the_periodic_report() -> None:
    s = ReportSchedule(T0)
    s.sending(T0)
    s.changed(T0 + REPORT_INTERVAL - COALESCE / 2)
    assert s.wait(T0 + REPORT_INTERVAL - COALESCE / 2) == pytest.approx(COALESCE / 2)


def test_a_failed_report_is_retried_soon() -> None:
    s = ReportSchedule(T0)
    s.sending(T0)
    s.failed(T0 + 0.2)
    assert s.wait(T0 + 0.2) == pytest.approx(RETRY)


# --- the kernel's part -------------------------------------------------------------------


def test_keepalive_options_are_set_on_the_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        set_keepalive(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
            assert sock.getsockopt(socket.IPPROTO_TCP,
                                   socket.TCP_KEEPINTVL) == KEEPALIVE_INTERVAL
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            assert sock.getsockopt(socket.IPPROTO_TCP,
                                   socket.TCP_USER_TIMEOUT) == USER_TIMEOUT * 1000


def test_keepalive_on_a_closed_socket_is_not_an_error() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.close()
    set_keepalive(sock)  # logged, not raised: the tunnel's own reads will notice
    set_keepalive(None)  # a transport without a socket
