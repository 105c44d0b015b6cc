"""The operations: what a command does to a vault, as plain functions and ``Vault`` methods.

- ``vault``: put, get, list, rotate, rm, fsck on one vault.
- ``edits``: pure changes to a parsed index (recipients, a new version, re-wrap, drop).
- ``sharing``: recipients, share/unshare, rekey, renew, the exposure ledger.
- ``recovery``: the Shamir (SLIP-39) recovery quorum.
- ``generate``: uniformly random values.
- ``sources``: where values, passwords and identities come from (stdin, files, prompts).
- ``transfer``: export and import (CMS, bundles, ``pass``, ``.env``, JSON).

They raise typed errors and never print.
"""
