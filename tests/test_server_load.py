"""50 devices at once against one real key server: logins, writes and reads, none lost.

Bounded in count (50 clients, 2 writes and 3 reads each) and in time (each
thread joined with a timeout); traffic only to 127.0.0.1.
"""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import clean_env
from server_helpers import device, init_server

CLIENTS = 50


def test_fifty_concurrent_clients_lose_no_write(tmp_path: Path) -> None:
    from ossl_vault.ops import sources
    from ossl_vault.ops.vault import Vault
    from ossl_vault.remote.client import Remote
    from ossl_vault.remote.store import RemoteStore

    server = init_server(tmp_path / "srv", clean_env(tmp_path)).start()
    try:
        first = device(tmp_path / "first", server, "team")
        first.register()
        password = first.password_file.read_bytes().strip()
        acknowledged: dict[str, bytes] = {}
        errors: list[str] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            try:
                remote = Remote(server.url, "team", home=tmp_path / f"device{i}")
                remote.login(password, 600)
                store = RemoteStore(remote, "put")
                vault = Vault(str(store.root), 60, "put", store=store)  # type: ignore[arg-type]
                ids = sources.identities((str(remote.key_path),), None, False)
                for round_ in range(2):
                    name, value = f"load/c{i}", f"value-{i}-{round_}".encode()
                    vault.put(name, value)
                    with lock:
                        acknowledged[name] = value
                    assert vault.get(name, ids) == value
            except Exception as e:  # every failure is reported, none hangs the test
                with lock:
                    errors.append(f"client {i}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert len(acknowledged) == CLIENTS
        listed = first.ok("list").out.decode()  # the real CLI sees every name
        assert all(name in listed for name in acknowledged)
        remote = Remote(server.url, "team", home=first.home / "config" / "ossl-vault" / "remote")
        store = RemoteStore(remote, "get")
        vault = Vault(str(store.root), 60, "get", store=store)  # type: ignore[arg-type]
        ids = sources.identities((str(remote.key_path),), None, False)
        for name, value in sorted(acknowledged.items()):  # every acknowledged write, read back
            assert vault.get(name, ids) == value
    finally:
        assert server.stop() == 0
