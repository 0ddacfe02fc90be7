"""An auth service alone (`gatehouse start` with only auth_service enabled) keeps serving
until it is stopped, and stops cleanly then."""

from __future__ import annotations

import time
from pathlib import Path

from gatehouse.process.harness import GATECTL, GATEHOUSE, Process, free_ports, run, write_yaml


def test_an_auth_alone_keeps_serving(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = write_yaml(tmp_path / "auth.yaml", {
        "version": "v1",
        "gatehouse": {"data_dir": str(tmp_path / "data")},
        "auth_service": {"enabled": True, "cluster_name": "lonely.example.com",
                         "listen_addr": f"127.0.0.1:{port}"},
    })
    daemon = Process("auth", [str(GATEHOUSE), "start", "-c", str(config)],
                     tmp_path / "auth.log").start()
    try:
        daemon.wait_up()
        time.sleep(2)  # it used to exit right after saying it was up
        assert daemon.alive(), daemon.log_text()
        assert "lonely.example.com" in run([str(GATECTL), "-c", str(config), "status"]).ok().out
    finally:
        assert daemon.stop() == 0, daemon.log_text()
