"""``gatectl backend copy``: open two stopped clusters' storage named by URIs, and copy.

The one command that opens a cluster's storage itself rather than asking its auth,
which is why the cluster must be stopped. URIs (docs/backend-copy.md):

- ``sqlite:DATA_DIR``: the data directory (``backend.sqlite`` and ``recordings/``);
- ``postgres:postgresql://USER@HOST:PORT/DATABASE?...``: everything in PostgreSQL;
- ``etcd:URL[,URL...]?prefix=/gatehouse/CLUSTER[&KEY=VALUE...]``, KEY being one of
  ``storage``'s etcd settings (``tls_ca_file``, ``tls_cert_file``, ``tls_key_file``,
  ``audit_conn_string``, a ``&`` in it written ``%26``) or ``data_dir``: the auth's data
  directory, where recordings are kept without audit_conn_string.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import parse_qsl

from gatehouse.backend import Backend, EtcdSettings, open_backend
from gatehouse.clock import Clock
from gatehouse.errors import BadParameter
from gatehouse.process.daemon import check_unlocked
from gatehouse.services.cluster_copy import Copied, Place, copy_cluster

__all__ = ["copy_between"]

_ETCD_KEYS = {"prefix", "tls_ca_file", "tls_cert_file", "tls_key_file", "audit_conn_string",
              "data_dir"}
_FORMS = ("sqlite:DATA_DIR, postgres:postgresql://..., or "
          "etcd:URL[,URL]?prefix=/gatehouse/CLUSTER[&...]")


async def copy_between(source: str, destination: str, clock: Clock, *, force: bool,
                       progress: Callable[[str, int], None]) -> Copied:
    """Copy the stopped cluster at source into destination (see the module's docstring)."""
    async with _opened(source, clock, source=True) as src, \
            _opened(destination, clock, source=False) as dst:
        return await copy_cluster(src, dst, force=force, now=clock.now(), progress=progress)


@contextlib.asynccontextmanager
async def _opened(uri: str, clock: Clock, *, source: bool) -> AsyncIterator[Place]:
    kind, _, rest = uri.partition(":")
    if not rest:
        raise BadParameter(f"storage URI {uri!r}: expected {_FORMS}")
    async with contextlib.AsyncExitStack() as stack:

        async def opened(backend: Backend) -> Backend:
            stack.push_async_callback(backend.close)
            return backend

        if kind == "sqlite":
            data_dir = Path(rest)
            database = data_dir / "backend.sqlite"
            if source and not database.is_file():
                raise BadParameter(f"{uri}: no database at {database} (expected the data "
                                   "directory of a cluster on SQLite)")
            check_unlocked(data_dir)
            state = await opened(await open_backend("sqlite", path=database, clock=clock))
            yield Place(uri, state, state, data_dir / "recordings", locked=True)
        elif kind == "postgres":
            state = await opened(await open_backend("postgres", path=None, clock=clock,
                                                    conn_string=rest))
            yield Place(uri, state, state, None)
        elif kind == "etcd":
            settings, audit_conn, etcd_dir = _etcd_settings(uri, rest)
            state = await opened(await open_backend("etcd", path=None, clock=clock,
                                                    etcd=settings))
            if audit_conn:
                audit = await opened(await open_backend("postgres", path=None, clock=clock,
                                                        conn_string=audit_conn))
                yield Place(uri, state, audit, None, etcd=settings)
            else:
                if etcd_dir is None:
                    raise BadParameter(f"{uri}: without audit_conn_string the auth on etcd "
                                       "keeps its recordings in its data directory: add "
                                       "&data_dir=PATH")
                check_unlocked(etcd_dir)
                yield Place(uri, state, state, etcd_dir / "recordings", etcd=settings)
        else:
            raise BadParameter(f"storage URI {uri!r}: unknown kind {kind!r}; expected "
                               f"{_FORMS}")


def _etcd_settings(uri: str, rest: str) -> tuple[EtcdSettings, str, Path | None]:
    """The etcd settings, audit_conn_string ("" if none) and data_dir an etcd URI names."""
    peers, _, query = rest.partition("?")
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise BadParameter(f"{uri}: {exc}") from None
    unknown = sorted(params.keys() - _ETCD_KEYS)
    if unknown:
        raise BadParameter(f"{uri}: unknown setting {unknown[0]!r}; expected "
                           f"{', '.join(sorted(_ETCD_KEYS))}")
    urls = [p for p in peers.split(",") if p]
    if not urls or not all(p.startswith(("http://", "https://")) for p in urls):
        raise BadParameter(f"{uri}: expected etcd client URLs (http:// or https://) "
                           "separated by commas before the ?")
    prefix = params.get("prefix", "")
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise BadParameter(f"{uri}: expected ?prefix=/gatehouse/CLUSTER (the cluster's "
                           "storage.prefix; starting with /, not ending with /)")
    audit = params.get("audit_conn_string", "")
    if audit and not audit.startswith(("postgresql://", "postgres://")):
        raise BadParameter(f"{uri}: audit_conn_string: expected postgresql://...")
    settings = EtcdSettings(peers=urls, prefix=prefix,
                            tls_ca_file=params.get("tls_ca_file"),
                            tls_cert_file=params.get("tls_cert_file"),
                            tls_key_file=params.get("tls_key_file"))
    data_dir = params.get("data_dir")
    return settings, audit, Path(data_dir) if data_dir else None
