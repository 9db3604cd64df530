"""Who may do what to runners' jobs: predicates, no state change.

One definition per rule (issue 8): the job pages and the progress fragment (through the
``may_change`` flag the views put in their context) ask these instead of calling ``can`` inline;
``do_cancel_job`` checks the same team action inside its transaction. Which team role allows
which action is decided once, in ``governance.permissions`` (``ROLE_ACTIONS``); this module only
says which action a job needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from governance.permissions import CHANGE, MANAGE, can

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from runners.models import Job, JobSchedule

    Person = User | AnonymousUser


def may_cancel_job(user: Person, job: Job, *, fresh: bool = False) -> bool:
    """Cancel ``job`` (queued) or ask it to stop (running): whoever may change the team's objects
    (model owners and data scientists). A tracked run is ended by its MLflow client, not here."""
    return job.kind != "tracked" and can(user, CHANGE, job.team_id, fresh=fresh)


def may_change_job_schedule(user: Person, schedule: JobSchedule, *, fresh: bool = False) -> bool:
    """Pause, resume, change or delete a job schedule: whoever may change the team's objects
    (``runners.schedules`` checks the same inside its transactions)."""
    return can(user, CHANGE, schedule.team_id, fresh=fresh)


def may_release_job(user: Person, job: Job, *, fresh: bool = False) -> bool:
    """Release ``job`` held by its team's budget: the team's model owners and platform admins
    (``manage``), who decide to spend past the budget."""
    return job.state == "held" and can(user, MANAGE, job.team_id, fresh=fresh)


def may_manage_budget(user: Person, team_id: int, *, fresh: bool = False) -> bool:
    """Set, change or remove team ``team_id``'s budget: its model owners and platform admins."""
    return can(user, MANAGE, team_id, fresh=fresh)
