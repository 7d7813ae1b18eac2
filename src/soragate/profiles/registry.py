"""Where profiles come from: the shipped files, an admin's file
(``SORAGATE_PROFILES_FILE``), and profiles added through the admin API (stored in the
database). Later sources replace earlier ones with the same id."""

from __future__ import annotations

import functools
import json
import tomllib
from pathlib import Path
from typing import Any

from soragate.profiles.families import families
from soragate.profiles.model import Profile, ProfileError, parse_profile

SHIPPED = Path(__file__).parent / "shipped"


def read_profiles(path: Path, *, source: str) -> list[Profile]:
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    entries: Any = data.get("profiles") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ProfileError(f"{path}: expected a list of [[profiles]]")
    # A file's [defaults] table fills in what each of its profiles leaves out (an upstream's
    # status words and result paths, which all its models share).
    defaults: Any = data.get("defaults", {}) if isinstance(data, dict) else {}
    if not isinstance(defaults, dict):
        raise ProfileError(f"{path}: [defaults] must be a table")
    profiles = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise ProfileError("a profile must be a table")
            profiles.append(parse_profile({**defaults, **entry}, source=source))
        except (ProfileError, KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{path}: profile #{index + 1}: {exc}") from None
    return profiles


def shipped_profiles() -> list[Profile]:
    found: list[Profile] = []
    for path in sorted(SHIPPED.glob("*.toml")):
        found.extend(read_profiles(path, source="shipped"))
    return found


@functools.cache
def shipped_index(kind: str) -> dict[str, Profile]:
    """The shipped profiles of one provider kind, by profile id and by upstream model id
    (read from disk once per process)."""
    return {key: p for p in shipped_profiles() if p.kind == kind for key in (p.id, p.model)}


def shipped_vocabulary(kind: str) -> Profile | None:
    """A shipped profile of ``kind`` that carries the kind's status words and result paths:
    what a task without a route, or a profile that leaves them out, is read with."""
    return next((p for p in shipped_index(kind).values() if p.status_map), None)


class ProfileRegistry:
    def __init__(self, *, extra_file: Path | None = None) -> None:
        self._profiles: dict[str, Profile] = {p.id: p for p in shipped_profiles()}
        if extra_file is not None:
            for profile in read_profiles(extra_file, source="file"):
                self._profiles[profile.id] = profile
        self._stored: dict[str, Profile] = {}
        self._families = families(self.all())

    def replace_stored(self, profiles: list[Profile]) -> bool:
        """Profiles kept in the database (added through the admin API); whether they changed."""
        stored = {p.id: p for p in profiles}
        if stored == self._stored:
            return False
        self._stored = stored
        self._families = families(self.all())
        return True

    def families(self) -> dict[str, list[Profile]]:
        """Public model name → the profiles that serve it (see profiles/families.py)."""
        return self._families

    def family(self, name: str) -> list[Profile]:
        return self._families.get(name, [])

    def get(self, profile_id: str) -> Profile | None:
        return self._stored.get(profile_id) or self._profiles.get(profile_id)

    def all(self) -> list[Profile]:
        merged = {**self._profiles, **self._stored}
        return sorted(merged.values(), key=lambda p: p.id)
