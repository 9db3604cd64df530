"""Where a model version comes from: ``resolve_source(source, actor=...)`` -> a local path (issue 9).

Governance resolves plain paths inside ``settings.STEWARD_IMPORT_ROOTS`` (a file or a directory).
Other apps register resolvers for URI schemes (``runs:/``, ``models:/``, ``mlflow-artifacts:/``)
from their ``AppConfig.ready()`` with ``register_source_resolver``: governance never imports them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class ResolvedSource:
    """A source's local ``path`` (file or directory), the Steward job that produced it (if any),
    the metrics and parameters to record with the version, and the dataset version it was trained
    on (``training_dataset_version_id``, when the job says). ``on_registered(version)``, when
    set, runs inside the registration's transaction: the resolver's app records what it knows of
    the new version (runners: the lineage edge run -> version), which governance cannot import.
    ``release()``, when set, is called once the caller is done with ``path`` (a resolver that
    gathered the files into a temporary folder removes it)."""

    path: Path
    source_job_id: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    training_dataset_version_id: int | None = None
    on_registered: Callable[[Any], None] | None = None
    release: Callable[[], None] | None = None


Resolver = Callable[..., ResolvedSource]
_RESOLVERS: dict[str, Resolver] = {}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


def register_source_resolver(scheme: str, resolver: Resolver) -> None:
    """Resolve sources ``<scheme>:...`` with ``resolver(source, *, actor) -> ResolvedSource``
    (it raises ValidationError or ObjectDoesNotExist for a source it cannot resolve, and checks
    that ``actor`` may read what it names). Registering a scheme again replaces its resolver."""
    _RESOLVERS[scheme.lower()] = resolver


def unregister_source_resolver(scheme: str) -> None:
    """Stop serving ``<scheme>:`` sources (no-op if none was registered)."""
    _RESOLVERS.pop(scheme.lower(), None)


def resolve_source(source: str, *, actor: User | None) -> ResolvedSource:
    """The local content ``source`` names: a registered scheme's resolver, else a path inside
    the import roots (``file:`` URIs too). ValidationError on ``source`` naming why otherwise."""
    if not isinstance(source, str) or not source.strip():
        raise ValidationError({"source": "a source is a non-empty path or URI"})
    match = _SCHEME.match(source)
    # "C:\\..." is a drive letter, not a scheme; one-letter schemes are not URIs Steward serves.
    if match and len(match.group(1)) > 1:
        scheme = match.group(1).lower()
        if scheme in _RESOLVERS:
            return _RESOLVERS[scheme](source, actor=actor)
        if scheme != "file":
            known = ", ".join(sorted(_RESOLVERS)) or "none"
            raise ValidationError(
                {"source": f"no resolver for {scheme}: sources; schemes served: {known}, or a server path"}
            )
        source = re.sub(r"^file:(//)?", "", source)
    return ResolvedSource(path=import_root_path(source))


def import_root_path(raw: str) -> Path:
    """The resolved path of a file or directory inside one of ``STEWARD_IMPORT_ROOTS`` (a relative
    path is looked up under each root in turn). ValidationError on ``source`` for a path outside
    them (no reading arbitrary server files, symlinks resolved first) or missing."""
    roots = [Path(root).resolve() for root in settings.STEWARD_IMPORT_ROOTS]
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            if any(resolved.is_relative_to(root) for root in roots) and resolved.exists():
                return resolved
        except (OSError, ValueError):
            continue
    raise ValidationError(
        {"source": f"{raw[:200]!r} is not a file or folder under the server's import folders"}
    )
