"""Monitoring's actions: the one audited way to change monitors, checks, alerts, channels, policies.

One module per concept (issue 8; Zulip's ``zerver/actions/``): ``monitors``, ``checks``, ``alerts``,
``escalations``, ``deliveries``, ``channels``, ``policies``, ``retraining`` (``history`` writes an
alert's events). Each ``do_<verb>_<noun>`` runs in one transaction, re-checks the actor's permission
inside it, writes its audit event in that transaction and schedules side effects with
``on_commit``. ``actor=None`` is the system (a Celery task). Who may do what:

- monitors and drift checks: members who may *change* the team's objects (model owners, data
  scientists);
- channels and escalation policies: members who may *manage* the team (model owners);
- an alert: its owner, or whoever may change the team's objects.

Imports point down: checks -> alerts -> escalations -> deliveries -> (notify, transports);
monitors -> checks.
"""
