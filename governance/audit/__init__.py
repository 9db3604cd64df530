"""The audit log (issue 3), one module per concept (issue 8):

* ``record``: ``record_audit_event`` and ``snapshot``, the write API every app uses (below);
* ``leaf``: THE leaf encoding (fields, canonical form, leaf hash, personal commitment);
* ``keys``: the checkpoint signing key, the HKDF key that tags events, the tag checks;
* ``sequencer``: leaf indexes, stored tree nodes and signed checkpoints;
* ``proofs``: checkpoints, inclusion and consistency proofs from stored nodes;
* ``verify``: one event's "verified" mark and ``manage.py audit_verify``;
* ``erasure``: ``do_erase_personal_data``.

``governance/merkle.py`` is the RFC 9162 engine underneath, and the auditors' offline verifier.
"""

from governance.audit.record import SYSTEM_ACTOR_LABEL, record_audit_event, request_id_var, snapshot

__all__ = ["SYSTEM_ACTOR_LABEL", "record_audit_event", "request_id_var", "snapshot"]
