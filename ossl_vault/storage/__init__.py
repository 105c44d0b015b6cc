"""Where a vault's bytes live: the directory (lock, atomic writes, blobs) and the audit log.

- ``files``: atomic replacement of one file (temp, fsync, rename, fsync dir).
- ``store``: the vault directory: its lock, its index and blobs, a commit.
- ``audit``: the hash-chained audit log and its signed checkpoints (section 7).
- ``paths``: where a vault lives by default.

A new storage driver goes here, behind the same calls ``Store`` offers.
"""
