"""Which proxy gsh falls back to for a leaf while the root does not answer (pure)."""

from __future__ import annotations

from gatehouse.client.fallback import fallback_plan

CA = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"


def test_a_leaf_that_published_its_proxy_is_reached_there() -> None:
    addr, notice = fallback_plan("us-east-1a", {"us-east-1a": ["leaf.example.com:3080", CA]})
    assert addr == "leaf.example.com:3080"
    assert notice == ("falling back to cluster us-east-1a's own proxy at "
                      "leaf.example.com:3080 (the root does not answer)")


def test_a_leaf_without_a_published_proxy_cannot_be_fallen_back_to() -> None:
    reason = ("cannot fall back to cluster us-east-1b's own proxy: it published no proxy "
              "address (proxy_service.public_addr) when you last logged in")
    published = {"us-east-1a": ["leaf.example.com:3080", CA]}
    assert fallback_plan("us-east-1b", published) == ("", reason)


def test_an_address_without_the_leafs_ca_is_not_used() -> None:
    """No CA to verify the leaf proxy with: never dial it unverified."""
    assert fallback_plan("us-east-1a", {"us-east-1a": ["leaf.example.com:3080", ""]})[0] == ""
    assert fallback_plan("us-east-1a", {"us-east-1a": ["", CA]})[0] == ""
    assert fallback_plan("us-east-1a", {"us-east-1a": ["leaf.example.com:3080"]})[0] == ""
