"""Users: their roles and traits. Password hashes and lock state are stored by the auth."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gatehouse.types.resource import Model, Name, Resource, invalid

__all__ = ["User", "UserSpec"]


class UserSpec(Model):
    roles: list[Name] = Field(min_length=1)
    # Trait values fill role templates: {"logins": ["root", "alice"]} -> {{internal.logins}}.
    traits: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("traits")
    @classmethod
    def _check_trait_names(cls, traits: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in traits:
            if not name or name != name.strip():
                raise invalid(f"{name!r} is not a valid trait name")
        return traits


class User(Resource):
    kind: Literal["user"] = "user"
    spec: UserSpec
    status: None = None
