"""Who may do what to monitoring's objects: predicates, no state change.

One definition per rule (issue 8): the UI views, the API and the templates (through the ``may_*``
flags the views put in their context) ask these; the actions re-check the same rule inside their
transaction with ``fresh=True``. Which team role allows which action is decided once, in
``governance.permissions`` (``ROLE_ACTIONS``); this module only says which action each monitoring
object needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from governance.models import Team
from governance.permissions import ALL_TEAMS, CHANGE, MANAGE, VIEW, can, team_scope

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from governance.models import ModelVersion
    from monitoring.models import Alert, Channel, EscalationPolicy, Monitor

    Person = User | AnonymousUser


def may_handle_alert(user: Person, alert: Alert, *, fresh: bool = False) -> bool:
    """Acknowledge, snooze or resolve ``alert``: its owner, or whoever may change the team's objects
    (model owners and data scientists)."""
    return (user.is_authenticated and user.pk == alert.owner_id) or can(
        user, CHANGE, alert.team_id, fresh=fresh
    )


def may_change_monitor(user: Person, monitor: Monitor, *, fresh: bool = False) -> bool:
    """Edit, run, pause, resume or delete ``monitor``."""
    return can(user, CHANGE, monitor.team_id, fresh=fresh)


def may_monitor_model_version(user: Person, model_version: ModelVersion, *, fresh: bool = False) -> bool:
    """Create a monitor of ``model_version`` or request a drift check of it."""
    return can(user, CHANGE, model_version.model.team_id, fresh=fresh)


def may_manage_channel(user: Person, channel: Channel, *, fresh: bool = False) -> bool:
    """Edit, enable, disable ``channel`` or rotate its secret: the team's model owners."""
    return can(user, MANAGE, channel.team_id, fresh=fresh)


def may_manage_escalation_policy(user: Person, policy: EscalationPolicy, *, fresh: bool = False) -> bool:
    """Edit or delete ``policy``: the team's model owners."""
    return can(user, MANAGE, policy.team_id, fresh=fresh)


def may_create_routing(user: Person) -> bool:
    """Whether to offer the "new channel" and "new escalation policy" forms at all: the user manages
    some team (the action still checks the team chosen). One query."""
    return Team.objects.restrict(user, MANAGE).exists()


def may_read_every_team(user: Person) -> bool:
    """A person who may view every team's objects (platform admin, compliance officer): who may read
    ``/metrics``, whose numbers name every team's models and columns."""
    return user.is_authenticated and team_scope(user, VIEW) is ALL_TEAMS
