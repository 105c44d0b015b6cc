"""The bottom layer: the one place that starts child processes (``proc``) and the
crypto steps built on them (``crypto``: ``openssl rand``/``enc``/``pkeyutl``, and the
HMAC/HKDF steps done in the standard library because the openssl 3.0 CLI would
need the key on argv). Secrets go to children on file descriptors, never argv.
Imports nothing of the package but :mod:`ossl_vault.errors`.
"""
