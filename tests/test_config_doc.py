"""docs/configuration.md against the config model: every key of gatehouse.yaml is in a
table row (`| `dotted.key` | default | meaning |`), no row names a key the model lacks,
and each documented default is the model's.

A default cell is a YAML value in backticks (`30s`, `[]`, `127.0.0.1:3025`), read as a
config file would be and compared with the model's own default; "none" for a key that is
unset by default; or words for a default the model computes at run time (the hostname).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gatehouse.config import Config, load_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
_ROW = re.compile(r"^\| `([a-z_.]+)` \| ([^|]*) \|")


def model_keys(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, FieldInfo]:
    """Every leaf key of the model, dotted (sections, i.e. nested models, are not keys)."""
    keys: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys |= model_keys(kind, f"{prefix}{name}.")
        else:
            keys[prefix + name] = info
    return keys


def doc_rows(text: str) -> dict[str, str]:
    """Documented key -> its default cell."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        if match := _ROW.match(line):
            rows.setdefault(match.group(1), match.group(2).strip())
    return rows


def _at(value: Any, key: str) -> Any:
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _nested(key: str, value: Any) -> dict[str, Any]:
    head, _, rest = key.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _default_problem(key: str, info: FieldInfo, cell: str) -> str:
    default = _at(Config(), key)
    if literal := re.match(r"`([^`]*)`", cell):
        # Read as a config file would be: YAML, then the model's own validation.
        try:
            written = Config.model_validate(_nested(key, yaml.safe_load(literal.group(1))))
        except (ValueError, yaml.YAMLError) as exc:
            return f"{key}: the documented default {cell!r} is not a valid value ({exc})"
        if _at(written, key) != default:
            return f"{key}: documented default {cell!r}, the model's is {default!r}"
    elif cell.startswith("none"):
        if default is not None:
            return f"{key}: documented as unset, the model's default is {default!r}"
    elif info.default_factory is None or default in ([], {}):
        # Words are only for a default computed where the process runs (the hostname).
        return f"{key}: write the default {default!r} in backticks, not {cell!r}"
    return ""


def problems(text: str) -> list[str]:
    """Where the doc and the model disagree (empty when they agree)."""
    rows, keys = doc_rows(text), model_keys()
    found = [f"{key}: not documented" for key in keys if key not in rows]
    found += [f"{key}: documented, but not a config key" for key in rows if key not in keys]
    found += [_default_problem(key, info, rows[key]) for key, info in keys.items()
              if key in rows]
    dupes = [line for line in text.splitlines() if _ROW.match(line)]
    if len(dupes) != len(rows):
        found.append("a key is documented twice")
    return [p for p in found if p]


def test_the_doc_lists_every_key_with_the_models_default() -> None:
    assert problems(DOC.read_text()) == []


def test_drift_is_caught() -> None:
    text = DOC.read_text()
    drifted = (text.replace("| `ssh_service.labels` |", "| `ssh_service.label` |")
               .replace("| `auth_service.limits.idle_timeout` | `30s` |",
                        "| `auth_service.limits.idle_timeout` | `31s` |")
               .replace("| `proxy_service.public_addr` | none |",
                        "| `proxy_service.public_addr` | `0.0.0.0:3080` |"))
    assert sorted(problems(drifted)) == sorted([
        "ssh_service.labels: not documented",
        "ssh_service.label: documented, but not a config key",
        "auth_service.limits.idle_timeout: documented default '`31s`', the model's is "
        "datetime.timedelta(seconds=30)",
        "proxy_service.public_addr: documented default '`0.0.0.0:3080`', the model's is None",
    ])


def test_the_example_is_a_valid_config(tmp_path: Path) -> None:
    text = DOC.read_text()
    example = text[text.index("```yaml\n") + len("```yaml\n"):]
    path = tmp_path / "gatehouse.yaml"
    path.write_text(example[:example.index("```")])
    cfg = load_config(path)
    assert cfg.enabled_services() == ["auth", "proxy", "ssh"]
