"""gatectl: administer a cluster through its auth service's API."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gatehouse.cli import views
from gatehouse.cli.common import (
    Format,
    ResourceFormat,
    die,
    new_app,
    print_json,
    print_table,
    run_async,
    setup_logging,
    write_stdout,
)
from gatehouse.cli.gatectl_backend import backend_app
from gatehouse.client.admin import AdminTarget, admin_target
from gatehouse.client.authclient import AuthClient
from gatehouse.errors import BadParameter, GatehouseError
from gatehouse.types.resource import NAME_RULE, Resource, is_name
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.user import User
from gatehouse.types.yaml_io import (
    canonical_kind,
    dump_yaml,
    from_json_obj,
    parse_resources,
    to_json_obj,
)
from gatehouse.wire.authapi import EventQuery, TokenRequest
from gatehouse.wire.names import EVENT_PAGE, MAX_EVENT_PAGE

app = new_app("Gatehouse admin tool. Talks to the running auth service (it never opens the "
              "database, but for `backend copy` of a stopped cluster), with the admin "
              "credentials from -c's data_dir or an --identity file.")
users_app = new_app("Manage local users.")
tokens_app = new_app("Manage join tokens.")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(backend_app, name="backend")

_T = TypeVar("_T")
_options: dict[str, Any] = {}  # the global options, until a command needs the auth
_targets: list[AdminTarget] = []


@app.callback()
def _main(
    config: Annotated[Path | None, typer.Option("-c", "--config", help="gatehouse.yaml")] = None,
    identity: Annotated[Path | None, typer.Option(help="Identity file (PEM bundle).")] = None,
    auth_server: Annotated[str, typer.Option(help="Auth address HOST:PORT.")] = "",
    debug: Annotated[bool, typer.Option("--debug", help="Verbose logs and tracebacks.")
                     ] = False,
) -> None:
    setup_logging(debug)
    _options.update(config=config, identity=identity, auth_server=auth_server)


def _target() -> AdminTarget:
    """Where and how to reach the auth, found when a command first needs it (so --help
    and usage errors need no daemon and no credentials)."""
    if not _targets:
        try:
            _targets.append(admin_target(_options["config"], _options["identity"],
                                         _options["auth_server"]))
        except GatehouseError as exc:
            die(str(exc))
    return _targets[0]


def _call(call: Callable[[AuthClient], Awaitable[_T]]) -> _T:
    """One call of the auth's typed API with this invocation's credentials."""
    target = _target()

    async def go() -> _T:
        async with target.api() as api:
            return await call(api)

    return run_async(go())


def _split(values: str) -> list[str]:
    return [v.strip() for v in values.split(",") if v.strip()]


@app.command()
def status(fmt: Annotated[Format, typer.Option("--format")] = Format.text) -> None:
    """Cluster name, CA fingerprints, counts, and on a leaf the tunnel to each root; exit
    0 only if every enabled service serves and every enabled trust's tunnel is up."""
    from gatehouse.client.health import check_services

    info: dict[str, Any] = _call(lambda api: api.status()).model_dump()
    target = _target()
    checks = run_async(check_services(target)) if target.config else []
    info["services"] = [{"service": c.service, "ok": c.ok, "detail": c.detail} for c in checks]
    trusts: dict[str, dict[str, str]] = info["trusted_clusters"]
    if fmt == Format.json:
        print_json(info)
    else:
        print(f"Cluster:  {info['cluster']}")
        for ca in info["cas"]:
            print(f"{ca['type'].capitalize() + ' CA:':<9} {ca['ssh_fingerprint']} (ssh)  "
                  f"{ca['tls_fingerprint']} (tls)")
        counts = ", ".join(views.plural(v, k.removesuffix("s")) for k, v in info["counts"].items())
        print(f"Counts:   {counts}")
        for c in checks:
            print(f"{c.service + ':':<9} {'ok' if c.ok else 'FAILING'} {c.detail}")
        for root, trust in trusts.items():
            print(f"Root:     {root} {views.trust_line(trust)}")
    if not all(c.ok for c in checks) or any(t["connection"] == "offline"
                                            for t in trusts.values()):
        raise SystemExit(1)


def _user(name: str, roles: list[str], traits: dict[str, list[str]]) -> User:
    """The user resource, or one line saying what is wrong with the name or a field."""
    if not is_name(name):
        die(f"invalid user name {name!r}: {NAME_RULE}")
    if not roles:
        die("give the user at least one role, e.g. --roles=access (`gatectl get role` "
            "lists them)")
    try:
        user = from_json_obj({"kind": "user", "metadata": {"name": name},
                              "spec": {"roles": roles, "traits": traits}}, where=f"user {name}")
    except BadParameter as exc:
        die(str(exc))
    assert isinstance(user, User)
    return user


_NAME_ARG = typer.Argument(metavar="NAME", help="User name.")


@users_app.command("add")
def users_add(
    name: Annotated[str, _NAME_ARG],
    roles: Annotated[str, typer.Option(help="Comma-separated role names.")],
    logins: Annotated[str, typer.Option(help="Comma-separated Unix logins.")] = "",
) -> None:
    """Create a user; set a password with `gatectl users set-password`."""
    user = _user(name, _split(roles), {"logins": _split(logins)})
    _call(lambda api: api.put_resource(user, upsert=False))
    print(f"user {name} created; set a password with: gatectl users set-password {name} "
          "--password-stdin")


@users_app.command("update")
def users_update(
    name: Annotated[str, _NAME_ARG],
    roles: Annotated[str | None, typer.Option(help="Comma-separated role names (replace "
                                                   "the user's roles).")] = None,
    logins: Annotated[str | None, typer.Option(help="Comma-separated Unix logins (replace "
                                                    "the user's logins).")] = None,
) -> None:
    """Replace a user's roles and/or logins; the rest of the user stays as it is."""
    if roles is None and logins is None:
        die("give --roles and/or --logins to change")
    [found] = _call(lambda api: api.get_resources("user", name))
    assert isinstance(found, User)
    traits = dict(found.spec.traits)
    if logins is not None:
        traits["logins"] = _split(logins)
    user = _user(name, found.spec.roles if roles is None else _split(roles), traits)
    _call(lambda api: api.put_resource(user, upsert=True))
    print(f"user {name} updated: roles {views.flow(user.spec.roles)}, "
          f"logins {views.flow(user.spec.traits.get('logins', []))}")


@users_app.command("set-password")
def users_set_password(
    name: Annotated[str, _NAME_ARG],
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
) -> None:
    """Set a user's password (at least 12 characters)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        from gatehouse.cli.prompt import ask_password

        password = ask_password(f"New password for {name}: ")
    _call(lambda api: api.set_password(name, password))
    print(f"password for {name} set")


@users_app.command("set-totp")
def users_set_totp(
    name: Annotated[str, _NAME_ARG],
    off: Annotated[bool, typer.Option("--off", help="Remove the second factor.")] = False,
) -> None:
    """Require a one-time code (TOTP) at login; prints the otpauth:// URI to enroll an app."""
    uri = _call(lambda api: api.set_totp(name, not off))
    if off:
        print(f"one-time codes no longer required for {name}")
    else:
        print(uri)
        print(f"# {name} must now log in with `gsh login --otp=CODE`", file=sys.stderr)


@users_app.command("ls")
def users_ls(fmt: Annotated[ResourceFormat, typer.Option("--format")] = ResourceFormat.text
             ) -> None:
    """List users."""
    _show(_call(lambda api: api.get_resources("user")), fmt)


@tokens_app.command("add")
def tokens_add(
    token_type: Annotated[str, typer.Option("--type", help="node, proxy or trusted_cluster")],
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 15m.")] = "30m",
) -> None:
    """Print a single-use join token alone on the first line of stdout."""
    token = _call(lambda api: api.add_token(TokenRequest(type=token_type, ttl=ttl)))
    print(token.token)
    print(f"# a {token_type} token, single use, valid until {token.expires}; it carries a pin "
          "of this cluster's host CA", file=sys.stderr)


@tokens_app.command("ls")
def tokens_ls(fmt: Annotated[ResourceFormat, typer.Option("--format")] = ResourceFormat.text
              ) -> None:
    """List unused join tokens, with when each expires."""
    _show(_call(lambda api: api.get_resources("token")), fmt)


@app.command()
def create(
    file: Annotated[str, typer.Argument(metavar="FILE", help="YAML file, or - for stdin.")],
    force: Annotated[bool, typer.Option("-f", "--force", help="Update if it exists.")] = False,
) -> None:
    """Create resources from a YAML file (several per file, separated by ---)."""
    try:
        text = sys.stdin.read() if file in ("-", "/dev/stdin") else Path(file).read_text()
    except OSError as exc:
        die(f"cannot read {file}: {exc.strerror}")
    try:
        resources = parse_resources(text)
    except BadParameter as exc:
        die(f"{file}: {exc}")
    if not resources:
        die(f"{file}: no resources found")
    for res in resources:
        created = _call(lambda api, res=res: api.put_resource(res, upsert=force))  # type: ignore[misc]
        if isinstance(res, TrustedCluster):  # "created" is a join, first or again
            done = f"joined the root at {res.spec.proxy_addr}" if created else "updated"
        else:
            done = "created" if created else "updated"
        print(f"{res.kind} {res.metadata.name} {done}")


def _kind_name(ref: str) -> tuple[str, str]:
    kind, _, name = ref.partition("/")
    try:
        return canonical_kind(kind), name
    except BadParameter as exc:
        die(str(exc))


def _show(resources: list[Resource], fmt: ResourceFormat) -> None:
    if fmt == ResourceFormat.json:
        print_json([to_json_obj(r) for r in resources])
    elif fmt == ResourceFormat.yaml:
        write_stdout(dump_yaml(resources))
    else:
        print_table(*views.resource_rows([to_json_obj(r) for r in resources]))


@app.command()
def get(
    ref: Annotated[str, typer.Argument(metavar="KIND[/NAME]",
                                       help="e.g. role/access, node, rc, ca")],
    fmt: Annotated[ResourceFormat, typer.Option("--format")] = ResourceFormat.text,
) -> None:
    """Show resources."""
    kind, name = _kind_name(ref)
    _show(_call(lambda api: api.get_resources(kind, name)), fmt)


@app.command()
def rm(ref: Annotated[str, typer.Argument(metavar="KIND/NAME", help="e.g. user/alice")]
       ) -> None:
    """Delete a resource."""
    kind, name = _kind_name(ref)
    if not name:
        die(f"give KIND/NAME, e.g. {kind}/NAME")
    _call(lambda api: api.delete_resource(kind, name))
    print(f"{kind} {name} deleted")


def _labels(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` as labels ("" for none), or one line naming the bad pair."""
    labels: dict[str, str] = {}
    for pair in _split(text):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            die(f"invalid label {pair!r}: expected key=value (e.g. --set-labels=env=prod,"
                "team=payments)")
        labels[key.strip()] = value.strip()
    return labels


@app.command()
def update(
    ref: Annotated[str, typer.Argument(metavar="rc/NAME", help="e.g. rc/us-east-1a")],
    set_labels: Annotated[str | None, typer.Option(
        "--set-labels", help="The remote cluster's labels, all of them: k=v,k2=v2 (a key "
                             "left out is removed; empty removes every label).")] = None,
) -> None:
    """Set a remote cluster's labels (which roles' cluster_labels select)."""
    kind, name = _kind_name(ref)
    if kind != "remote_cluster" or not name:
        die(f"gatectl update takes rc/NAME (a remote cluster), not {ref!r}")
    if set_labels is None:
        die("give --set-labels=k=v,... (the labels to keep; --set-labels= removes all)")
    labels = _labels(set_labels)
    try:
        rc = from_json_obj({"kind": "remote_cluster", "metadata": {"name": name,
                                                                   "labels": labels}},
                           where="--set-labels")
    except BadParameter as exc:
        die(str(exc))
    _call(lambda api: api.put_resource(rc, upsert=True))
    print(f"remote_cluster {name} labels: {views.flow(labels) if labels else '(none)'}")


@app.command()
def events(
    since: Annotated[str, typer.Option(help="Only events newer than this, e.g. 1h or 2d.")
                     ] = "",
    event_type: Annotated[str, typer.Option("--type", help="Comma-separated event types.")] = "",
    user: Annotated[str, typer.Option(help="Only this user's events.")] = "",
    cluster: Annotated[str, typer.Option(help="Only this cluster's events.")] = "",
    limit: Annotated[int, typer.Option(help=f"At most this many (1 to {MAX_EVENT_PAGE}).")
                     ] = EVENT_PAGE,
    cursor: Annotated[str, typer.Option(help="Continue where an earlier page ended.")] = "",
    fmt: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """Search the audit log, newest first; a page that is not the last ends with the
    --cursor of the next on stderr."""
    query = EventQuery(since=since, types=_split(event_type), user=user, cluster=cluster,
                       limit=limit, cursor=cursor)
    page = _call(lambda api: api.search_events(query))
    if fmt == Format.json:
        print_json(page.events)
    else:
        print_table(*views.event_rows(page.events))
    if page.next:
        print(f"# more events: add --cursor={page.next} for the next page", file=sys.stderr)


def main() -> None:
    app()
