"""The basic promise through the real CLI: what goes in comes out."""

from conftest import KINDS, VaultDir


def test_put_get_every_kind(all_kinds_vault: VaultDir) -> None:
    v = all_kinds_vault
    v.ok("put", "a/b", input=b"v\x00\n\t\xff")
    for kind in KINDS:
        assert v.ok("get", "a/b", identity=kind).out == b"v\x00\n\t\xff"
