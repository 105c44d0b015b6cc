"""The light path: a plain ``get``, ``env`` or ``exec`` without click, tabulate, filelock or gnupg.

:mod:`ossl_vault.cli.argv` parses the command line and hands a plain read
here. The work is the full CLI's own (:func:`ossl_vault.ops.read.read` for
``get``, :mod:`ossl_vault.cli.envs` for ``env`` and ``exec``), so every promise
holds in the same order: the MAC is checked before anything is decrypted, the
audit record is durable before the value goes out, a failure is one error
line with its exit code and leaves its audit record. Only the printing is
done here, as cli/common.py does it for click. tests/test_light.py asserts
which modules a plain ``get`` loads, so that a new import on this path fails
a test rather than a benchmark.
"""

from __future__ import annotations

import os
import sys

from ossl_vault.cli.argv import AUDIT_SKIPPED, Plain, error_line, internal_message
from ossl_vault.cli.terminal import BINARY_HINT, binary, binary_refusal
from ossl_vault.errors import PERMISSION_HINT, UsageError, VaultError
from ossl_vault.format.seal import Identities
from ossl_vault.ops import read, sources
from ossl_vault.ops.vault import Vault


def run(wanted: Plain) -> None:
    """Do the read and exit: 0 with the value out, else the error line and its code."""
    os.umask(0o077)
    vault: Vault | None = None
    try:
        if wanted.command == "get":  # in the order cli/main.py's get takes these steps
            ids = sources.identities(
                wanted.identity, None, False, sources.key_passphrase_source(None)
            )
            vault = read.open_vault(wanted.vault_dir, wanted.lock_timeout, "get")
            out = get(vault, ids, wanted)
        else:
            from ossl_vault.cli import envs  # the agent's client and the keyring: not for get

            values = envs.read_env_values(
                envs.Where(wanted.vault_dir, wanted.identity, wanted.lock_timeout),
                tuple(wanted.args if wanted.command == "env" else wanted.specs),
                None, False, None, wanted.command,
            )  # fmt: skip
            if wanted.command == "exec":
                envs.exec_with(wanted.args, values)
            out = envs.export_lines(values)
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    except VaultError as e:
        failed(vault, wanted, e.exit_code, type(e).__name__)
        error_line(e.message, e.hint, e.exit_code)
    except BrokenPipeError:
        os._exit(1)  # the reader went away: nothing more to say to it
    except KeyboardInterrupt:
        failed(vault, wanted, 1, "Interrupted")
        error_line("interrupted", None, 1)
    except PermissionError as e:  # as cli/main.py's handler: no traceback either
        failed(vault, wanted, 4, "PermissionError")
        where = f" on {e.filename!r}" if e.filename else ""
        error_line(f"permission denied{where}", PERMISSION_HINT, 4)
    except Exception as e:  # a bug: still one line, an exit code and an audit record
        failed(vault, wanted, 1, type(e).__name__)
        error_line(f"internal error: {internal_message(e)}", "this is a bug in ossl-vault", 1)
    sys.exit(0)


def failed(vault: Vault | None, wanted: Plain, code: int, kind: str) -> None:
    """A failed get's audit record (exec and env record their own reads)."""
    if vault is not None:
        read.record_failure(vault, wanted.args[0], wanted.number, code, kind)


def get(vault: Vault, ids: Identities, wanted: Plain) -> bytes:
    """The value of ``get NAME [--version N]``, after its audit record (cli/main.py's get)."""
    name = wanted.args[0]
    value = read.read(vault, name, ids, wanted.number, sources.password_source(None))
    skipped = vault.store.audit_skipped
    if skipped:  # best-effort mode went ahead without it: say so, as the CLI does
        sys.stderr.write(f"ossl-vault: warning: {AUDIT_SKIPPED.format(skipped)}\n")
    if vault.expired:
        sys.stderr.write(f"ossl-vault: warning: secret {name!r} expired on {vault.expired}\n")
    if sys.stdout.isatty() and binary(value):
        raise UsageError(binary_refusal(name), hint=BINARY_HINT)
    return value
