"""What each request of the line protocol does: ``serve --stdio`` and the agent's operations.

docs/protocol.md is the contract; :mod:`ossl_vault.agent.protocol` reads the
lines and runs each request here on a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ossl_vault import __version__
from ossl_vault.agent.client import FINAL, Connections, RemoteError, forward
from ossl_vault.agent.keyring import Keyring
from ossl_vault.errors import FAILED, UsageError, VaultError
from ossl_vault.format.fields import b64
from ossl_vault.ops.read import record_failure
from ossl_vault.ops.vault import Vault

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (exec's light path)
if TYPE_CHECKING:
    from ossl_vault.agent.protocol import Fields  # the protocol loads asyncio: not for exec


class Operations:
    """What each op does, synchronously, on a worker thread.

    ``vault_of(fields, op)`` opens the vault of a request (serve: the one of
    ``--vault``; the agent: the request's ``vault`` field), a fresh ``Vault``
    per request whose audit records name ``op``. With ``agent`` (a socket
    path), get and share ask the agent first and fall back to ``keyring`` when
    it is gone or holds no key for the secret. Every request leaves one audit
    record, as a CLI command does: reads and writes record themselves; a list
    or a failure is recorded here.
    """

    def __init__(
        self,
        keyring: Keyring,
        vault_of: Callable[[Fields, str], Vault],
        agent: str | None = None,
        password: bytes | None = None,
    ) -> None:
        self.keyring, self.vault_of, self.password = keyring, vault_of, password
        self.agent = Connections(agent) if agent else None

    def __call__(self, op: str, fields: Fields) -> dict[str, object]:
        if op == "ping":
            return {"version": __version__}

        vault = self.vault_of(fields, op)
        handler: Callable[[Vault, Fields], dict[str, object]] = getattr(self, f"op_{op}")
        try:
            result = handler(vault, fields)
        except RemoteError:
            raise  # the agent has recorded it
        except VaultError as e:
            try:
                audit_outcome(vault, fields, f"exit={e.exit_code}:{type(e).__name__}")
            except VaultError:
                pass  # already failing: the first error is the one to report
            raise
        if op == "list":
            audit_outcome(vault, fields, "ok")
        return result

    def _forward(self, op: str, vault: Vault, fields: Fields) -> dict[str, object] | None:
        if self.agent is None:
            return None
        message = {k: b64(v) if k.endswith("_b64") else v for k, v in fields.items()}
        return forward(self.agent, {"op": op, "vault": str(vault.store.root), **message})

    def op_get(self, vault: Vault, fields: Fields) -> dict[str, object]:
        number = fields.get("version")
        if number is not None and number < 1:
            raise UsageError("field 'version' must be a positive integer")
        if "password_b64" not in fields and self.password is not None:
            fields = {**fields, "password_b64": self.password}
        forwarded = self._forward("get", vault, fields)
        if forwarded is not None:
            return forwarded
        return self._read(vault, fields["name"], number, fields.get("password_b64"))

    def _read(
        self, vault: Vault, name: str, number: int | None, password: bytes | None
    ) -> dict[str, object]:
        value = self.keyring.get(vault, name, number, password)
        result: dict[str, object] = {"value_b64": b64(value)}
        if vault.expired:  # it still reads; the client warns (format.md 2.7)
            result["expired"] = vault.expired
        return result

    def op_get_many(self, vault: Vault, fields: Fields) -> dict[str, object]:
        """The agent's batch of gets (docs/protocol.md): each name's result or error, as
        that many ``get`` requests would answer and record, the records in one write."""
        from ossl_vault.storage.store import Deferred

        names = fields["names"]
        if not 1 <= len(names) <= MAX_MANY:
            raise UsageError(f"field 'names' must hold 1 to {MAX_MANY} names")
        records = vault.store.deferred = Deferred()
        results: list[dict[str, object]] = []
        size = 0  # of the reply so far: it must fit one line (MAX_LINE) with one more value
        for name in names:
            if size > REPLY_BUDGET:  # not read, not recorded: the client reads it itself
                results.append({"error": {"code": FAILED, "message": "the reply is full"}})
                continue
            try:
                results.append(self._read(vault, name, None, fields.get("password_b64")))
            except VaultError as e:
                record_failure(vault, name, None, e.exit_code, type(e).__name__)
                error: dict[str, object] = {"code": e.exit_code, "message": e.message}
                error.update({"hint": e.hint} if e.hint else {})
                error.update({"final": True} if e.final else {})
                results.append({"error": error})
            size += len(str(results[-1]))
        records.flush()
        return {"results": results}

    def read_many(self, vault: Vault, names: list[str]) -> list[dict[str, object]]:
        """Each name's ``get`` result, for exec and env: the agent's, in one ``get_many``
        request, where it has them; the rest read here. The first failure raises, its
        record written (the agent's records are the agent's)."""
        fields: Fields = {"names": names}
        if self.password is not None:
            fields["password_b64"] = self.password
        answered: dict[str, dict[str, object]] = {}
        forwarded = self._forward("get_many", vault, fields)
        results = forwarded.get("results") if forwarded is not None else None
        if isinstance(results, list) and len(results) == len(names):
            for name, r in zip(names, results, strict=True):
                error = r.get("error") if isinstance(r, dict) else None
                if isinstance(error, dict) and (error.get("code") in FINAL or error.get("final")):
                    raise RemoteError(error["code"], str(error.get("message")), error.get("hint"))
                if isinstance(r, dict) and isinstance(r.get("value_b64"), str):
                    answered[name] = r  # else: read it here, as after a get the agent refused
        out = []
        for name in names:
            if name not in answered:
                try:
                    answered[name] = self._read(vault, name, None, self.password)
                except VaultError as e:
                    record_failure(vault, name, None, e.exit_code, type(e).__name__)
                    raise
            out.append(answered[name])
        return out

    def op_put(self, vault: Vault, fields: Fields) -> dict[str, object]:
        to = fields.get("to") or None
        number = vault.put(fields["name"], fields["value_b64"], to, fields.get("password_b64"))
        return {"version": number}

    def op_list(self, vault: Vault, fields: Fields) -> dict[str, object]:
        return {"secrets": vault.list()}

    def op_generate(self, vault: Vault, fields: Fields) -> dict[str, object]:
        from ossl_vault.ops.generate import generate

        alphabet = "symbols" if fields.get("symbols") else "alnum"
        fmt = fields.get("format", "base64")
        value = generate(fmt, fields.get("bytes"), fields.get("length"), alphabet)
        number = vault.put(fields["name"], value, fields.get("to") or None)
        result: dict[str, object] = {"version": number}
        if fields.get("print"):
            result["value_b64"] = b64(value)
        return result

    def op_share(self, vault: Vault, fields: Fields) -> dict[str, object]:
        from ossl_vault.ops.sharing import share

        if not fields["users"]:
            raise UsageError("field 'users' is empty")
        forwarded = self._forward("share", vault, fields)
        if forwarded is not None:
            return forwarded
        return {"added": share(vault, fields["name"], fields["users"], self.keyring.identities())}


MAX_MANY = 1000  # names in one get_many request
# get_many stops reading at this many bytes of reply: the largest value (1 MiB, 1.4 MiB
# of base64) still fits after it in the protocol's 2 MiB line (docs/protocol.md)
REPLY_BUDGET = 600_000


def audit_outcome(vault: Vault, fields: Fields, result: str) -> None:
    """One audit record for a request that wrote none itself (the CLI does this at exit)."""
    if vault.store.logged or not os.path.exists(os.path.join(vault.store.root, "audit.log")):
        return
    event = vault.event(str(fields.get("name") or "-"), fields.get("version"))
    event.result = result
    vault.store.log(event)
