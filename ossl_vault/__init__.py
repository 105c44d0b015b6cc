"""ossl-vault: small secrets encrypted on disk by the openssl command line."""

__version__ = "0.1.0"
