"""The OPAQUE wrapper (ossl_vault/remote/opaque.py) against RFC 9807 Appendix C, and its flows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ossl_vault.errors import AccessDenied
from ossl_vault.remote import opaque

VECTORS = Path(__file__).parent / "vectors" / "opaque-rfc9807.txt"


def vectors() -> list[dict[str, bytes]]:
    found: list[dict[str, bytes]] = []
    for line in VECTORS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(": ")
        if key == "vector":
            found.append({})
        else:
            found[-1][key] = bytes.fromhex(value)
    return found


@pytest.mark.parametrize("vector", vectors(), ids=["C.1.1", "C.1.2"])
def test_registration_response_matches_rfc9807_appendix_c(vector: dict[str, bytes]) -> None:
    # the dummy key only serves unknown users; any valid point will do: the server's own
    setup = opaque.setup_from_parts(
        vector["oprf_seed"], vector["server_private_key"], vector["server_public_key"]
    )
    server = opaque.Server(setup)
    assert server.public_key == vector["server_public_key"]
    user = vector["credential_identifier"].decode()
    response = server.registration_response(vector["registration_request"], user)
    assert response.hex() == vector["registration_response"].hex()


def test_a_changed_seed_changes_the_response() -> None:
    """The vector test can fail: another OPRF seed gives another evaluated element."""
    v = vectors()[0]
    seed = bytes([v["oprf_seed"][0] ^ 1]) + v["oprf_seed"][1:]
    server = opaque.Server(
        opaque.setup_from_parts(seed, v["server_private_key"], v["server_public_key"])
    )
    response = server.registration_response(v["registration_request"], "1234")
    assert response != v["registration_response"]
    assert response[32:] == v["server_public_key"]


def test_register_login_and_the_same_export_key() -> None:
    server = opaque.Server(opaque.new_setup())
    reg = opaque.Registration(b"correct horse")
    upload, export_key, server_key = reg.finish(
        server.registration_response(reg.request_bytes(), "alice")
    )
    assert server_key == server.public_key
    record = server.record(upload)
    login = opaque.Login(b"correct horse")
    ke2, state = server.login_start(login.ke1_bytes(), "alice", record)
    ke3, session_key, export_again = login.finish(ke2)
    assert server.login_finish(state, ke3) == session_key
    assert export_again == export_key and len(export_key) == 64


def test_wrong_password_and_unknown_user_look_alike() -> None:
    server = opaque.Server(opaque.new_setup())
    reg = opaque.Registration(b"pw-one")
    upload, _, _ = reg.finish(server.registration_response(reg.request_bytes(), "alice"))
    record = server.record(upload)
    sizes = []
    for user, rec, password in (("alice", record, b"pw-two"), ("nobody", None, b"pw-one")):
        login = opaque.Login(password)
        ke2, _state = server.login_start(login.ke1_bytes(), user, rec)
        sizes.append(len(ke2))
        with pytest.raises(AccessDenied):
            login.finish(ke2)
    assert sizes[0] == sizes[1]
    # one unknown name always gets the same (fake) record, as a real one would
    assert server.fake_record("nobody") == server.fake_record("nobody")
    assert server.fake_record("nobody") != server.fake_record("nobody2")
