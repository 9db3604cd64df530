"""OpenLineage: the protocol side (parsing and checking events, issue 10). No Django here; the
governed objects events become live in ``runners.openlineage`` (lineage may not import governance)."""
