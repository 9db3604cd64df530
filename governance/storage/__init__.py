"""The artifact store (issue 12): one interface for every app's artifacts, on the filesystem or
S3-compatible object storage, envelope-encrypted when key-encryption keys are configured.

``governance.artifacts`` (content addressing, archives, model files) stores and reads through
``store``; ``envelope`` is the plain cryptography, ``backends`` where the bytes live.
"""

from governance.storage.store import (
    ArtifactCorrupt,
    ArtifactErased,
    ArtifactMissing,
    ArtifactStoreUnavailable,
    ArtifactUnreadable,
    audit_stored_object,
    cold_backend,
    delete,
    delete_prefix,
    file_sha256,
    is_direct,
    keyring,
    local_path,
    move_to_cold,
    put_directory,
    put_file,
    rewrap_all,
    shred,
    sweep_leftovers,
)

__all__ = [
    "ArtifactCorrupt",
    "ArtifactErased",
    "ArtifactMissing",
    "ArtifactStoreUnavailable",
    "ArtifactUnreadable",
    "audit_stored_object",
    "cold_backend",
    "delete",
    "delete_prefix",
    "file_sha256",
    "is_direct",
    "keyring",
    "local_path",
    "move_to_cold",
    "put_directory",
    "put_file",
    "rewrap_all",
    "shred",
    "sweep_leftovers",
]
