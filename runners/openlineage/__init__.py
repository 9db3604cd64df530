"""OpenLineage ingest (issue 10): external jobs, runs and datasets as governed, team-owned rows.

They live in runners, not lineage: they need governance's restriction and audit, and lineage may
not import governance (pyproject's layers). The protocol itself is ``lineage.openlineage.events``.
"""
