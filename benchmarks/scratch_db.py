"""A scratch PostgreSQL database for a benchmark run, shared by the benchmarks (one definition).

Each benchmark measures Steward on a database of its own, created empty at the start and dropped
at the end, on the server ``DATABASE_URL`` names; ``WITH (FORCE)`` (PostgreSQL 13+) drops it even
while a killed worker or server of the run still holds a connection.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit


def scratch_url(url: str, name: str) -> str:
    """``url`` (a PostgreSQL URL) pointing at database ``name`` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _admin_connection(url: str) -> Any:
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    )


def recreate_database(url: str, name: str) -> None:
    """Drop database ``name`` on ``url``'s server if it exists, and create it empty."""
    with _admin_connection(url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def drop_database(url: str, name: str) -> None:
    """Close this process's Django connections, then drop database ``name`` on ``url``'s server."""
    from django.db import connections

    connections.close_all()
    with _admin_connection(url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
