"""gatehouse: run the daemon's services."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from gatehouse._sys.hostport import dial_addr
from gatehouse.cli.common import die, new_app, run_async, setup_logging
from gatehouse.config import Config, load_config
from gatehouse.errors import GatehouseError

app = new_app("Gatehouse daemon: auth, proxy and SSH services.")


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Verbose logs and tracebacks.")] = False,
) -> None:
    setup_logging(debug, logging.INFO)


def _next_steps(cfg: Config, started: object, config: Path | None) -> str:
    from gatehouse.process.daemon import Started

    assert isinstance(started, Started)
    lines = [f"gatehouse: cluster {started.cluster} is up ("
             + ", ".join(f"{k} on {v}" for k, v in started.addrs.items())
             + f"); its data is in {cfg.data_dir}"]
    # A first cluster's tour: gatectl needs this config to name the auth, and the ssh line
    # a node of this process (a proxy of its own has neither).
    if "proxy" in started.addrs and "auth" in started.addrs:
        c = f" -c {config}" if config else ""
        proxy = cfg.proxy_service.public_addr or dial_addr(started.addrs["proxy"])
        lines += [
            "next steps:",
            f"  gatectl{c} users add alice --roles=access --logins=root,alice",
            f"  gatectl{c} users set-password alice --password-stdin",
            f"  gsh login --proxy={proxy} --user=alice --insecure",
            f"  gsh ls; gsh ssh root@{cfg.gatehouse.nodename} 'echo hi'" if "ssh" in started.addrs
            else "  gsh ls",
        ]
    return "\n".join(lines)


@app.command()
def start(
    config: Annotated[Path | None, typer.Option("-c", "--config", help="gatehouse.yaml")] = None,
) -> None:
    """Start the services the config enables (no config: a one-node cluster on loopback)."""
    from gatehouse.process import daemon

    try:
        cfg = load_config(config) if config else Config.single_node()
    except GatehouseError as exc:
        die(str(exc))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await daemon.run(cfg, lambda s: print(_next_steps(cfg, s, config), flush=True),
                             config_file=config)
        except asyncio.CancelledError:
            print("gatehouse: stopped", flush=True)

    run_async(main())


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the clusters keep their state and logs.")
    ] = Path("gatehouse-demo"),
) -> None:
    """Run the seed's example for real: root sso.example.com, leaves us-east-1a and
    us-east-1b (each auth + proxy + node), joined by tokens, with a logged-in user."""
    from gatehouse.cli.demo import run_demo

    try:
        run_demo(directory.absolute())
    except GatehouseError as exc:
        die(str(exc))
    except KeyboardInterrupt:
        pass


def main() -> None:
    app()
