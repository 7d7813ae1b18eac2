"""Model profiles: how canonical parameters become one upstream model's fields.

A provider *kind* is a wire protocol (Kie's jobs API, xAI's videos API…); a *profile* says,
as data, what one upstream model on that kind accepts: the duration field and its type and
allowed values, how orientation and resolution are spelled, how reference images travel,
required extras, and the price. Snapping (``snap``) turns a canonical request into the
nearest values a profile accepts; ``fields`` writes them into the upstream's names.
"""

from soragate.profiles.model import Profile, ProfileError, parse_profile
from soragate.profiles.snap import Snapped, SnapPolicy, snap

__all__ = ["Profile", "ProfileError", "SnapPolicy", "Snapped", "parse_profile", "snap"]
