"""OIDC connectors validate themselves: issuer, secrets, scope, mapping patterns; the
secret is left out of what is shown."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gatehouse.errors import BadParameter
from gatehouse.types import parse_resources, to_json_obj
from gatehouse.types.oidc import OIDCConnector


def _connector(**spec: Any) -> str:
    base: dict[str, Any] = {"issuer_url": "https://idp.example.com", "client_id": "gatehouse",
                            "client_secret": "s3cret",
                            "claims_to_roles": [{"claim": "groups", "value": "admins",
                                                 "roles": ["admin"]}]}
    base.update(spec)
    return yaml.safe_dump({"kind": "oidc", "version": "v1", "metadata": {"name": "corp"},
                           "spec": base})


def _parse(text: str) -> OIDCConnector:
    (res,) = parse_resources(text)
    assert isinstance(res, OIDCConnector)
    return res


def test_defaults_and_secret_left_out_when_shown() -> None:
    conn = _parse(_connector())
    assert conn.spec.scope == ["openid", "email", "profile"]
    assert conn.spec.username_claim == "" and conn.spec.issuer_url == "https://idp.example.com"
    shown = to_json_obj(conn.without_secret())
    assert "client_secret" not in shown["spec"] and "s3cret" not in str(shown)
    assert "client_secret" in to_json_obj(conn)["spec"]  # what is stored keeps it


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:9000", "http://localhost:8080/realm",
                                    "http://[::1]:9000", "https://idp.example.com/tenant"])
def test_issuers_accepted(issuer: str) -> None:
    assert _parse(_connector(issuer_url=issuer)).spec.issuer_url == issuer


@pytest.mark.parametrize(("change", "message"), [
    ({"issuer_url": "http://idp.example.com"}, "http:// is allowed only for a loopback host"),
    ({"issuer_url": "http://10.0.0.1"}, "http:// is allowed only for a loopback host"),
    ({"issuer_url": "ftp://idp.example.com"}, "expected https://"),
    ({"issuer_url": "https://idp.example.com/?x=1"}, "no query or fragment"),
    ({"client_secret_file": "/etc/secret"}, "not both"),
    ({"scope": ["email"]}, "scope must include openid"),
    ({"claims_to_roles": []}, "claims_to_roles"),
    ({"claims_to_roles": [{"claim": "groups", "value": "^dev-($", "roles": ["x"]}]},
     "invalid regular expression"),
    ({"redirect_url": "http://proxy.example.com/cb"}, "redirect_url"),
    ({"unknown": 1}, "unknown"),
])
def test_bad_connectors_name_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadParameter) as caught:
        _parse(_connector(**change))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
