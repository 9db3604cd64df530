"""Monitoring pages, one module per concept (issue 8; Zulip's ``zerver/views/``): the dashboard,
a model version's page, monitors, drift checks, alerts, channels, escalation policies and
``/metrics``. ``monitoring/urls.py`` names each view by its module.

UI views sit above every app, so the two pages that answer cross-app questions live here: the
dashboard (open alerts first: the model owner's question) and the model version page (its alerts,
monitors, metrics, lineage, drift checks and jobs). They read runners' jobs and embed its
inference form, which posts to a runners URL; no business logic crosses. Who may do what is asked
of ``monitoring.permissions``; state changes go through ``monitoring.actions``.
"""
