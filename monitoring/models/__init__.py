"""Monitors of model versions, their drift checks, and the alerts, escalations and deliveries they
cause, one module per concept (issue 8). Django finds models through this package, so it names
every model; the rest of the code imports them from here.

``monitors`` (Monitor and its bounds), ``checks`` (DriftCheck, ReferenceProfile: the drift engine's
cached summary of a reference), ``routing`` (Channel, EscalationPolicy, EscalationLevel),
``alerts`` (Alert, AlertEvent, Notification), ``labels`` (PredictionLabel: late labels),
``rules`` (what several share).
"""

from monitoring.models.alerts import (
    UNRESOLVED,
    Alert,
    AlertEvent,
    AlertEventKind,
    AlertKind,
    AlertState,
    Notification,
    NotificationState,
)
from monitoring.models.checks import CheckState, DriftCheck, ProfileState, ReferenceProfile, ReportState
from monitoring.models.labels import LabelKind, PredictionLabel
from monitoring.models.monitors import MONITOR_BOUNDS, MONITOR_FIELDS, CurrentSource, Monitor
from monitoring.models.routing import (
    MAX_DELAY_MINUTES,
    MAX_REPEAT,
    Channel,
    ChannelKind,
    EscalationLevel,
    EscalationPolicy,
)
from monitoring.models.rules import Severity

__all__ = [
    "MAX_DELAY_MINUTES",
    "MAX_REPEAT",
    "MONITOR_BOUNDS",
    "MONITOR_FIELDS",
    "UNRESOLVED",
    "Alert",
    "AlertEvent",
    "AlertEventKind",
    "AlertKind",
    "AlertState",
    "Channel",
    "ChannelKind",
    "CheckState",
    "CurrentSource",
    "DriftCheck",
    "EscalationLevel",
    "EscalationPolicy",
    "LabelKind",
    "Monitor",
    "Notification",
    "NotificationState",
    "PredictionLabel",
    "ProfileState",
    "ReferenceProfile",
    "ReportState",
    "Severity",
]
