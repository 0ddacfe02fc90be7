"""A real OpenID provider for the SSO tests, and a browser to log in at it.

``IdP`` runs tests/idp/idp.mjs (the oidc-provider npm package, installed by
scripts/setup.sh into .cache/idp) on a loopback port with the clients and accounts a
test gives it, optionally over TLS. ``Browser`` does what a person's browser does:
follows redirects, keeps cookies, fills the provider's login form with a username and
password, and confirms the consent page.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatehouse.process.harness import HarnessError, Process, base_env, free_ports

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "idp" / "idp.mjs"
MODULES = ROOT / ".cache" / "idp"
CLIENT_ID = "gatehouse"
CLIENT_SECRET = "idp-test-client-secret-0123456789"
MAX_HOPS = 20  # redirects and forms one login may take


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
    tls: tuple[Path, Path] | None = None  # certificate and key files
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
        }
        if self.tls:
            config["tls"] = {"cert": str(self.tls[0]), "key": str(self.tls[1])}
        path = self.workdir / "idp.json"
        path.write_text(json.dumps(config))
        self.process = Process("idp", ["node", str(SCRIPT), str(path)],
                               self.workdir / "idp.log", env=base_env(IDP_MODULES=str(MODULES)))
        self.process.start()
        self.process.wait_ready("the IdP's discovery document", self._discoverable)
        return self

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
    """A cookie jar and a redirect-following HTTP client, trusting ``cafile`` (PEM)."""

    def __init__(self, cafile: Path | None = None) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.visited: list[str] = []
        self.context = ssl.create_default_context(cafile=str(cafile) if cafile else None)

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
            form = {"username": username, "password": password} \
                if 'name="username"' in page.body else {}
            page = self.open(target, form, stop_at=stop_at)
        raise HarnessError(f"login at {url} took more than {MAX_HOPS} forms")

