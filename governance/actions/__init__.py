"""The one audited way to change governance state, one module per concept (Zulip's ``zerver/actions/``).

Each ``do_<verb>_<noun>(..., *, actor)`` runs in one transaction, re-checks the actor's permission
inside it, writes its audit event in the same transaction, and returns the changed object.
``actor=None`` means the system (a Celery task) acting ``on_behalf_of`` the user who started the work.
Import from the concept module: ``from governance.actions.datasets import do_create_dataset``.
"""
