"""The SSO tests' identity provider itself: discoverable, PKCE and the device grant
offered, its login page checks passwords, a login ends at the client's redirect."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from tests.integration.idp import CLIENT_ID, Account, Browser, IdP

REDIRECT = "https://127.0.0.1:9/callback"


def test_login_at_the_idp_reaches_the_redirect(tmp_path: Path) -> None:
    idp = IdP(tmp_path / "idp", [REDIRECT],
              {"alice": Account("alice-password", {"email": "alice@example.com",
                                                   "groups": ["admins"]})}).start()
    try:
        doc = idp.discovery()
        assert doc["issuer"] == idp.issuer
        assert "S256" in doc["code_challenge_methods_supported"]
        assert "urn:ietf:params:oauth:grant-type:device_code" in doc["grant_types_supported"]
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
            "scope": "openid email groups", "state": "st", "nonce": "no",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256"})
        url = f"{doc['authorization_endpoint']}?{query}"
        refused = Browser().login(url, "alice", "wrong-password", stop_at=REDIRECT)
        assert refused.status == 401 and "invalid username or password" in refused.body
        page = Browser().login(url, "alice", "alice-password", stop_at=REDIRECT)
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
        assert page.url.startswith(REDIRECT) and params["state"] == ["st"], page
        assert params["code"][0]
    finally:
        idp.stop()
