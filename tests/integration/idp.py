"""A real OpenID provider for the SSO tests, and a browser to log in at it.

``IdP`` runs tests/idp/idp.mjs (the oidc-provider npm package, installed by
scripts/setup.sh into .cache/idp) on a loopback port with the clients and accounts a
test gives it, optionally over TLS. ``Browser`` does what a person's browser does:
follows redirects, keeps cookies, fills the provider's login form with a username and
password, and confirms the consent page.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import ipaddress
import json
import os
import queue
import re
import secrets
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc.jwk import RSAKey

from gatehouse.process.harness import (
    CMD_TIMEOUT,
    GSH,
    Client,
    Cluster,
    HarnessError,
    Process,
    base_env,
    free_ports,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "idp" / "idp.mjs"
MODULES = ROOT / ".cache" / "idp"
CLIENT_ID = "gatehouse"
CLIENT_SECRET = "idp-test-client-secret-0123456789"
MAX_HOPS = 20  # redirects and forms one login may take
# Patience for the provider's start on a loaded machine (a crash is seen at once). A
# start that stalled past 30 s on CI once left no clue: the error now says whether the
# provider was starved of CPU, busy or waiting.
READY_TIMEOUT = 90.0


def _signing_key() -> dict[str, Any]:
    """A fresh RS256 key as a private JWK: made here, outside the provider's timed start."""
    key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig",
                                                "alg": "RS256"})
    return dict(key.as_dict(private=True))


@dataclass
class Account:
    password: str
    claims: dict[str, Any]


@dataclass
class IdP:
    """The provider in ``workdir``; ``redirect_uris`` registered for the one client."""

    workdir: Path
    redirect_uris: list[str]
    accounts: dict[str, Account]
    tls: tuple[Path, Path, Path] | None = None  # CA, certificate and key files (make_tls)
    code_ttl: int = 0  # seconds its authorization codes live (0: the provider's default)
    port: int = 0
    process: Process | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> IdP:
        if not (MODULES / "node_modules" / "oidc-provider").is_dir():
            raise HarnessError("oidc-provider is not installed: run scripts/setup.sh")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        config = {
            "port": self.port, "issuer": self.issuer,
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                         "redirect_uris": self.redirect_uris, "response_types": ["code"],
                         "grant_types": ["authorization_code",
                                         "urn:ietf:params:oauth:grant-type:device_code"]}],
            "accounts": {name: {"password": a.password, "claims": a.claims}
                         for name, a in self.accounts.items()},
            "jwk": _signing_key(),
        }
        if self.code_ttl:
            config["codeTtl"] = self.code_ttl
        if self.tls:
            config["tls"] = {"cert": str(self.tls[1]), "key": str(self.tls[2])}
        path = self.workdir / "idp.json"
        path.write_text(json.dumps(config))
        self.process = Process("idp", ["node", str(SCRIPT), str(path)],
                               self.workdir / "idp.log", env=base_env(IDP_MODULES=str(MODULES)))
        self.process.start()
        try:
            self.process.wait_ready("the IdP's discovery document", self._discoverable,
                                    READY_TIMEOUT)
        except HarnessError as exc:
            raise HarnessError(f"{exc}; the provider: {self._where()}") from None
        return self

    def _where(self) -> str:
        """What a stalled provider was doing: its state, CPU time so far, and kernel wait."""
        assert self.process is not None
        proc = Path(f"/proc/{self.process.pid}")
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            wchan = (proc / "wchan").read_text() or "-"
        except OSError as exc:
            return f"(unreadable: {exc})"
        ticks = os.sysconf("SC_CLK_TCK")
        return (f"state {fields[0]}, CPU user {int(fields[11]) / ticks:.2f} s system "
                f"{int(fields[12]) / ticks:.2f} s, waiting in {wchan}")

    def _discoverable(self) -> bool:
        try:
            return bool(self.discovery())
        except (OSError, ValueError):
            return False

    def discovery(self) -> dict[str, Any]:
        ctx = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else None
        url = f"{self.issuer}/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=5, context=ctx) as reply:
            doc: dict[str, Any] = json.load(reply)
        return doc

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class _Recorder(urllib.request.HTTPRedirectHandler):
    def __init__(self, visited: list[str], stop_at: str) -> None:
        self.visited = visited
        self.stop_at = stop_at

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        self.visited.append(newurl)
        if self.stop_at and newurl.startswith(self.stop_at):
            return None  # the caller sees the redirect (HTTPError) and its URL
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class Page:
    status: int
    url: str
    body: str


class Browser:
    """A cookie jar and a redirect-following HTTP client, trusting ``cafiles`` (PEM)."""

    def __init__(self, *cafiles: Path) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.visited: list[str] = []
        self.context = ssl.create_default_context()
        for cafile in cafiles:
            self.context.load_verify_locations(cafile=str(cafile))

    def open(self, url: str, form: dict[str, str] | None = None, stop_at: str = "") -> Page:
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar),
            urllib.request.HTTPSHandler(context=self.context), _Recorder(self.visited, stop_at))
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with opener.open(url, data=data, timeout=30) as reply:
                return Page(reply.status, reply.url, reply.read().decode(errors="replace"))
        except urllib.error.HTTPError as exc:
            return Page(exc.code, exc.geturl() or url, exc.read().decode(errors="replace"))

    def login(self, url: str, username: str, password: str, stop_at: str = "") -> Page:
        """Open ``url`` (an IdP authorization URL), sign in, consent; the last page (or, with
        ``stop_at``, the redirect to a URL starting so, not followed)."""
        page = self.open(url, stop_at=stop_at)
        for _ in range(MAX_HOPS):
            if stop_at and self.visited and self.visited[-1].startswith(stop_at):
                return Page(page.status, self.visited[-1], page.body)
            action = re.search(r'<form[^>]*action="([^"]+)"', page.body)
            if action is None:
                return page
            target = urllib.parse.urljoin(page.url, action.group(1))
            form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                                   page.body))
            if 'name="username"' in page.body:
                form.update(username=username, password=password)
            page = self.open(target, form, stop_at=stop_at)
        raise HarnessError(f"login at {url} took more than {MAX_HOPS} forms")



def connector_yaml(idp: IdP, name: str = "corp", rules: str = "") -> str:
    """An oidc connector for ``idp``: groups admins -> sso-dev, dev-X -> dev-X."""
    rules = rules or ('    - {claim: groups, value: admins, roles: [sso-dev]}\n'
                      '    - {claim: groups, value: "^dev-(.*)$", roles: ["dev-$1"]}\n')
    return (f"kind: oidc\nversion: v1\nmetadata: {{name: {name}}}\nspec:\n"
            f"  issuer_url: {idp.issuer}\n  client_id: {CLIENT_ID}\n"
            f"  client_secret: {CLIENT_SECRET}\n"
            f"  scope: [openid, email, profile, groups]\n  claims_to_roles:\n{rules}")


@dataclass
class SSOLogin:
    """What one `gsh login --auth` did: its exit, stderr, the URL it printed, the browser."""

    rc: int
    out: str
    err: str
    url: str
    browser: Browser
    seconds: float  # from gsh's start to its exit (the browser drives the IdP meanwhile)


def sso_login(client: Client, connector: str, username: str, password: str,
              proxy_ca: Path, *extra: str, idp_ca: Path | None = None,
              headless: bool = False, bare: bool = False,
              hold_callback: float = 0.0) -> SSOLogin:
    """`gsh login --auth=CONNECTOR --browser=none` (``bare``: `gsh login --browser=none`
    after a first login), with the test's browser doing the person's part at the URL gsh
    prints (trusting the proxy's CA, and ``idp_ca``). ``hold_callback``: seconds the
    browser holds the IdP's redirect to the proxy before following it."""
    argv = [str(GSH), "login", f"--proxy={client.proxy}", f"--auth={connector}",
            "--headless" if headless else "--browser=none", f"--ca-file={proxy_ca}", *extra]
    if bare:  # `gsh login` again, all from the profile
        argv = [str(GSH), "login", "--browser=none"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=client.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # stderr is read by a thread: the URL line must be seen while gsh waits.
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    url = ""
    deadline = time.monotonic() + CMD_TIMEOUT
    while not url and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if not line:
            break  # gsh exited before printing a URL
        seen.append(line)
        if line.startswith(("https://", "http://")):
            url = line.strip()
    browser = Browser(proxy_ca, *([idp_ca] if idp_ca else []))
    if url and hold_callback:
        held = browser.login(url, username, password, stop_at=f"https://{client.proxy}/")
        time.sleep(hold_callback)
        browser.open(held.url)
    elif url:
        browser.login(url, username, password)
    # Not communicate(): it would read stderr too, racing the thread for gsh's last line.
    try:
        proc.wait(timeout=CMD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    assert proc.stdout is not None
    out = proc.stdout.read()  # a few lines: the pipe never filled
    proc.stdout.close()
    reader.join(timeout=5)
    while not lines.empty():
        seen.append(lines.get())
    return SSOLogin(proc.returncode, out, "".join(seen), url, browser,
                    time.perf_counter() - start)


def _read_lines(stream: IO[str] | None, into: queue.Queue[str]) -> None:
    """Every line of ``stream``, then "" at its end."""
    assert stream is not None
    for line in stream:
        into.put(line)
    into.put("")


def proxy_ca_file(cluster: Cluster, path: Path) -> Path:
    """The cluster's host CA (which signs the proxy's TLS certificate), as a PEM file."""
    for ca in cluster.gatectl("get", "ca", "--format=json").ok().json():
        if ca["spec"]["type"] == "host":
            path.write_text(ca["spec"]["tls_certs"][0])
            return path
    raise HarnessError("the cluster shows no host CA")


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA of the test's own and a certificate it signs for 127.0.0.1: (CA PEM file,
    certificate file, key file), for an IdP over TLS."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "test IdP CA")])
    ca = (cx509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(cx509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(cx509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(cx509.KeyUsage(False, False, False, False, False, True, True, False,
                                        False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (cx509.CertificateBuilder()
            .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "idp")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(cx509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(cx509.SubjectAlternativeName(
                [cx509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "idp.pem", directory / "idp.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
