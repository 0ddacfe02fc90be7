"""Fuzzing resource files and objects (types/yaml_io.py and the kinds of types/): valid
resources round-trip through YAML and JSON; any other text or object is BadParameter
alone (what gatectl and the API catch), and YAML aliases cannot multiply memory."""

from __future__ import annotations

import contextlib
import json

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.types import (
    Resource,
    TrustedCluster,
    User,
    dump_yaml,
    from_json_obj,
    parse_duration,
    parse_resources,
    to_json_obj,
)
from tests.fuzz.budget import fuzz, peak_bytes
from tests.types.test_yaml_io import roles, sample_resources

_names = st.from_regex(r"[a-z][a-z0-9._@-]{0,10}", fullmatch=True)
_text = st.text(max_size=10)


@st.composite
def users(draw: st.DrawFn) -> User:
    return User(metadata={"name": draw(_names)}, spec={
        "roles": draw(st.lists(_names, min_size=1, max_size=3)),
        "traits": draw(st.dictionaries(_text.map(str.strip).filter(bool),
                                       st.lists(_text, max_size=3), max_size=3))})


@st.composite
def trusted_clusters(draw: st.DrawFn) -> TrustedCluster:
    role_map = [{"remote": draw(st.sampled_from(["*", "dev", "^dev-(.*)$"])),
                 "local": draw(st.lists(_names, min_size=1, max_size=2))}
                for _ in range(draw(st.integers(0, 3)))]
    return TrustedCluster(metadata={"name": draw(_names)}, spec={
        "enabled": draw(st.booleans()), "token": draw(_names),
        "proxy_addr": f"{draw(_names)}:{draw(st.integers(1, 65535))}", "role_map": role_map})


_resources = st.lists(roles() | users() | trusted_clusters() | st.sampled_from(
    sample_resources()), max_size=4)


@fuzz(80)
@given(_resources)
@example([User(metadata={"name": "a"}, spec={"roles": ["a"], "traits": {"0\x850": []}})])
def test_resources_round_trip(resources: list[Resource]) -> None:
    assert parse_resources(dump_yaml(resources)) == resources
    for resource in resources:
        assert from_json_obj(json.loads(json.dumps(to_json_obj(resource)))) == resource


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=12)
_envelopes = st.fixed_dictionaries({"kind": st.sampled_from(
    ["role", "user", "token", "node", "trusted_cluster", "rc", "ca", "cluster_name", "x"])},
    optional={"version": st.just("v1") | _json, "metadata": st.fixed_dictionaries(
        {"name": _names | _json}, optional={"labels": _json, "expires": _json}) | _json,
        "spec": _json, "status": _json})


@fuzz(200)
@given(_json | _envelopes)
def test_any_object_is_a_resource_or_bad_parameter(obj: object) -> None:
    with contextlib.suppress(BadParameter):
        from_json_obj(obj)


# YAML the dumper would not write: tags, odd scalars, flow and block mixed.
_yaml_bits = st.sampled_from([
    "kind: role\n", "metadata: {name: r}\n", "spec:\n", "  allow:\n", "    logins: [a]\n",
    "---\n", "- ", ": ", "[", "]", "{", "}", ",", "&a ", "*a", "!!int ", "!!float ",
    "!!binary ", "!!timestamp ", "!!python/object ", "2001-02-30", "2001-12-14t21:59:43.10",
    "1" * 5000, "0x" + "f" * 50, "1:2:3", ".inf", "~", "'", '"', "\\ud800", "\t", "\n",
    "? ", "|\n", ">-\n", "%YAML 1.1\n", "...\n", "#", "<<: *a\n", "\x00", "\ufeff"])


@fuzz(400)
@given(st.lists(_yaml_bits | _text, max_size=14).map("".join))
@example("a: 2001-02-30")
@example("a: " + "1" * 5000)
@example("a: !!int abc")
@example("[" * 10_000)
@example("a: !!timestamp 2001-12-14t99:59:43")
def test_any_text_is_resources_or_bad_parameter(text: str) -> None:
    with contextlib.suppress(BadParameter):
        parse_resources(text)


@fuzz(200)
@given(st.text(st.characters(exclude_categories=()), max_size=12) | st.from_regex(
    r"(\d{1,5000}h)?(\d{1,30}m)?(\d{1,30}s)?", fullmatch=True))
@example("9" * 5000 + "h")
def test_any_duration_text_is_a_duration_or_bad_parameter(text: str) -> None:
    with contextlib.suppress(BadParameter):
        parse_duration(text)


def test_aliases_do_not_multiply_memory() -> None:
    # Each level names the one before ten times: 10**8 strings if copied.
    lines = ['a0: &a0 ["' + "x" * 100 + '"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = "kind: role\nmetadata: {name: r}\nspec: {allow: {logins: *a8}}\nx:\n" + "\n".join(
        "  " + line for line in lines)
    assert peak_bytes(lambda: parse_resources(bomb), BadParameter) < 4 * 1024 * 1024


def test_yaml_nested_deeper_than_the_limit_is_bad_parameter() -> None:
    for text in ("[" * 10_000 + "]" * 10_000, "a:\n" + "".join(
            " " * i + "- \n" for i in range(2000))):
        try:
            parse_resources(text)
        except BadParameter as exc:
            assert "nested deeper than" in str(exc)
        else:
            raise AssertionError("accepted")
    assert yaml.safe_load("[" * 50 + "]" * 50) is not None  # the limit is far past real files
