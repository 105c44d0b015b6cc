"""Recipient key kinds, one module each, as age and sops keep them.

- ``pubkeys``: X.509 certificates and SubjectPublicKeyInfo public keys (RSA,
  EC P-256/P-384, X25519): parsing, kind, fingerprint, expiry.
- ``ssh``: OpenSSH public keys and private keys (converted for openssl).
- ``gpg``: GnuPG keys through python-gnupg.
- ``github``: a GitHub user's published SSH keys.
- ``loader``: a public key from a file of any of these kinds.

A new recipient kind goes here, and its wrap in :mod:`ossl_vault.format.wrapping`.
"""
