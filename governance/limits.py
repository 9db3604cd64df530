"""Size limits of registry text (issue 9): one definition, checked by the actions.

MLflow's own limits for tags (key 250, value 5,000 characters); descriptions of models, versions
and datasets are bounded the same way, so a 1 MB description is a 400, not a stored row.
Every violation is a ValidationError naming the field and the limit.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

TAG_KEY_MAX = 250
TAG_VALUE_MAX = 5000
DESCRIPTION_MAX = 5000


def checked_description(value: Any, *, field: str = "description") -> str:
    """``value`` as a description (a string of at most DESCRIPTION_MAX characters; None is "")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError({field: f"{field} must be a string"})
    if len(value) > DESCRIPTION_MAX:
        raise ValidationError(
            {field: f"{field} has at most {DESCRIPTION_MAX} characters, this one has {len(value)}"}
        )
    return value


def checked_tag(key: Any, value: Any) -> tuple[str, str]:
    """``(key, value)`` of one tag: a non-empty key of at most TAG_KEY_MAX characters and a string
    value of at most TAG_VALUE_MAX; ValidationError on ``tags`` naming the key and the limit."""
    if not isinstance(key, str) or not key.strip():
        raise ValidationError({"tags": "a tag key is a non-empty string"})
    if len(key) > TAG_KEY_MAX:
        raise ValidationError(
            {"tags": f"tag key {key[:40]!r}... has {len(key)} characters; at most {TAG_KEY_MAX}"}
        )
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationError({"tags": f"the value of tag {key!r} must be a string"})
    if len(value) > TAG_VALUE_MAX:
        raise ValidationError(
            {"tags": f"the value of tag {key!r} has {len(value)} characters; at most {TAG_VALUE_MAX}"}
        )
    return key, value


def checked_tags(tags: Any) -> dict[str, str]:
    """A ``{key: value}`` dict of tags, each checked by ``checked_tag``; None is {}."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise ValidationError({"tags": "tags are an object of string keys and string values"})
    return dict(checked_tag(key, value) for key, value in tags.items())
