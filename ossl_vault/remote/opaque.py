"""OPAQUE (RFC 9807) for the key server and its client: the one module that knows the binding.

The suite is opaque-snake's (opaque-ke 4.x inside): OPRF ristretto255-SHA512,
3DH over ristretto255 with SHA-512, and Argon2id as the key-stretching
function on the client. Everything crosses this module as bytes, so the
binding can be swapped without touching the server or the CLI.

The server's login state cannot be serialized: KE2 and KE3 must be handled by
the same process (docs/api.md).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ossl_vault.errors import AccessDenied, UsageError

SUITE = "OPAQUE-3DH ristretto255-SHA512, KSF Argon2id"
# opaque-ke's Argon2::default(), which opaque-snake uses and does not let us change.
ARGON2ID = {"variant": "argon2id", "version": 19, "memory_kib": 19456, "iterations": 2, "lanes": 1}
SETUP_LEN = 128  # oprf_seed (64) || server private key (32) || dummy public key (32)
RECORD_LEN = 192  # client public key (32) || masking key (64) || envelope (nonce 32, tag 64)
REQUEST_LEN = 32
KE1_LEN = 96
KE3_LEN = 64
UPLOAD_LEN = RECORD_LEN
EXPORT_KEY_LEN = 64


def _lib() -> Any:
    import opaque_snake  # off every path but the server's and remote's

    return opaque_snake


class BadMessage(UsageError):
    """An OPAQUE message that does not parse (a client bug or an attack)."""


def _parse(kind: str, data: bytes, length: int) -> Any:
    lib = _lib()
    if len(data) != length:
        raise BadMessage(f"{kind} must be {length} bytes, not {len(data)}")
    try:
        return getattr(lib, kind).from_bytes(data)
    except lib.OpaqueError:
        raise BadMessage(f"{kind} does not parse") from None


def _text(password: bytes) -> str:
    try:
        return password.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the password must be UTF-8 text") from None


def new_setup() -> bytes:
    """A fresh server setup: OPRF seed and server key pair (keep it 0600)."""
    return bytes(_lib().OpaqueServer().export_setup())


def setup_from_parts(oprf_seed: bytes, private_key: bytes, dummy_public_key: bytes) -> bytes:
    """A setup from its parts (RFC 9807 Appendix C gives the first two)."""
    setup = oprf_seed + private_key + dummy_public_key
    if len(setup) != SETUP_LEN:
        raise UsageError("an OPAQUE setup is a 64-byte seed and two 32-byte keys")
    return setup


class Server:
    """The server's side: registration responses, records, login (KE2, then KE3)."""

    def __init__(self, setup: bytes) -> None:
        lib = _lib()
        if len(setup) != SETUP_LEN:
            raise UsageError(f"the OPAQUE setup must be {SETUP_LEN} bytes")
        self._setup = setup
        self._server = lib.OpaqueServer(setup)
        request, _state = lib.OpaqueClient().start_registration("public key probe")
        # RegistrationResponse = evaluated element || server public key (RFC 9807 5.2.2)
        self.public_key = bytes(
            self._server.create_registration_response(request, "-").to_bytes()[32:]
        )

    def registration_response(self, request: bytes, user: str) -> bytes:
        """The response to a registration request for credential identifier ``user``."""
        parsed = _parse("RegistrationRequest", request, REQUEST_LEN)
        return bytes(self._server.create_registration_response(parsed, user).to_bytes())

    def record(self, upload: bytes) -> bytes:
        """The registration record to store, from the client's upload."""
        parsed = _parse("RegistrationUpload", upload, UPLOAD_LEN)
        return bytes(self._server.finish_registration(parsed).to_bytes())

    def fake_record(self, user: str) -> bytes:
        """A record for a user who does not exist (RFC 9807 section 10.9).

        As opaque-ke's own fake: the setup's dummy public key, a masking key
        and a zero envelope; the masking key is derived from the OPRF seed and
        the name, so repeated probes of one unknown name see one record, as
        they would for a real user.
        """
        masking = hmac.new(self._setup[:64], b"fake-masking-key\0" + user.encode(), hashlib.sha512)
        return self._setup[96:128] + masking.digest() + bytes(96)

    def login_start(self, ke1: bytes, user: str, record: bytes | None) -> tuple[bytes, Any]:
        """KE2 and the state that must come back with KE3; a fake record when ``record`` is None."""
        lib = _lib()
        request = _parse("CredentialRequest", ke1, KE1_LEN)
        password_file = lib.PasswordFile.from_bytes(record or self.fake_record(user))
        try:
            response, state = self._server.create_credential_response(request, user, password_file)
        except lib.OpaqueError:
            raise BadMessage("KE1 was refused") from None
        return bytes(response.to_bytes()), state

    def login_finish(self, state: Any, ke3: bytes) -> bytes:
        """The 64-byte session key; AccessDenied when KE3 does not authenticate."""
        lib = _lib()
        finalization = _parse("CredentialFinalization", ke3, KE3_LEN)
        try:
            return bytes(self._server.finish_login(finalization, state).session_key)
        except lib.OpaqueError:
            raise AccessDenied("login failed") from None


class Registration:
    """The client's side of registering (or changing) a password."""

    def __init__(self, password: bytes) -> None:
        self._password = _text(password)
        self.request, self._state = _lib().OpaqueClient().start_registration(self._password)

    def request_bytes(self) -> bytes:
        return bytes(self.request.to_bytes())

    def finish(self, response: bytes) -> tuple[bytes, bytes, bytes]:
        """(upload, export_key, server public key) from the server's response."""
        lib = _lib()
        parsed = _parse("RegistrationResponse", response, 64)
        try:
            result = lib.OpaqueClient().finish_registration(parsed, self._state, self._password)
        except lib.OpaqueError:
            raise BadMessage("the server's registration response was refused") from None
        return bytes(result.upload.to_bytes()), bytes(result.export_key), bytes(result.server_s_pk)


class Login:
    """The client's side of a login: KE1 now, KE3 from the server's KE2."""

    def __init__(self, password: bytes) -> None:
        self._password = _text(password)
        self.ke1, self._state = _lib().OpaqueClient().start_login(self._password)

    def ke1_bytes(self) -> bytes:
        return bytes(self.ke1.to_bytes())

    def finish(self, ke2: bytes) -> tuple[bytes, bytes, bytes]:
        """(KE3, session key, export key); AccessDenied for a wrong password or unknown user."""
        lib = _lib()
        try:
            parsed = lib.CredentialResponse.from_bytes(ke2)
            result = lib.OpaqueClient().finish_login(parsed, self._state, self._password)
        except lib.OpaqueError:
            raise AccessDenied(
                "login failed: wrong password or unknown user",
                hint="the server cannot tell you which, by design",
            ) from None
        keys = result.session_keys
        return (
            bytes(result.finalization.to_bytes()),
            bytes(keys.session_key),
            bytes(keys.export_key),
        )
