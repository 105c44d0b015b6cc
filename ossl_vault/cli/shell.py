"""Shell integration: ``completion bash|zsh|fish`` and the man page, both from the click commands.

Completion is click's own (the script calls ``ossl-vault`` back with
``_OSSL_VAULT_COMPLETE`` set); secret and recipient names come from the
vault through ``shell_complete`` callbacks (:mod:`ossl_vault.cli.common`).
The man page is one ossl-vault(1) page, written here rather than with
click-man, which writes a page per command and reads ``group.commands``, so
it would miss every lazily loaded command. ``make man`` writes both into
``share/``, which the wheel installs.
"""

from __future__ import annotations

import sys

import click

from ossl_vault import __version__
from ossl_vault.errors import EXIT_CODES

SHELLS = ("bash", "zsh", "fish")
PROG = "ossl-vault"
COMPLETE_VAR = "_OSSL_VAULT_COMPLETE"


def completion_script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    from ossl_vault.cli.main import main_group

    cls = get_completion_class(shell)
    assert cls is not None
    return cls(main_group, {}, PROG, COMPLETE_VAR).source()


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL: commands, options, secret and recipient names.

    bash: eval "$(ossl-vault completion bash)" in ~/.bashrc; zsh: the same
    with zsh in ~/.zshrc; fish: ossl-vault completion fish | source.
    """
    click.echo(completion_script(shell), nl=False)


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, leading dots and quotes, hyphens."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in ".'" else line for line in text.splitlines())


def _paragraphs(text: str) -> str:
    """A command's docstring as roff paragraphs (click keeps the docstring's indentation)."""
    import inspect

    blocks = [" ".join(b.split()) for b in inspect.cleandoc(text).split("\n\n") if b.strip()]
    return "\n.PP\n".join(_roff(b) for b in blocks)


def _walk(group: click.Group, ctx: click.Context) -> list[tuple[click.Context, click.Command]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(command, info_name=name, parent=ctx)
        if isinstance(command, click.Group):
            found += _walk(command, sub)
        else:
            found.append((sub, command))
    return found


def _options(ctx: click.Context, command: click.Command) -> list[str]:
    out = []
    for param in command.params:
        record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
        if record:
            out += [".TP", f"\\fB{_roff(record[0])}\\fR", _roff(record[1]) or "."]
    return out


def man_page() -> str:
    """ossl-vault(1), built from the commands' help (``make man``)."""
    from ossl_vault.cli.main import main_group

    root = click.Context(main_group, info_name=PROG)
    lines = [
        f'.TH OSSL-VAULT 1 "" "ossl-vault {__version__}" "User Commands"',
        ".SH NAME",
        "ossl\\-vault \\- small secrets encrypted with the openssl command line",
        ".SH SYNOPSIS",
        "\\fBossl\\-vault\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        _paragraphs(main_group.help or ""),
        ".SH OPTIONS",
        *_options(root, main_group),
        ".SH COMMANDS",
    ]
    for ctx, command in _walk(main_group, root):
        usage = " ".join(command.collect_usage_pieces(ctx))
        path = ctx.command_path.removeprefix(PROG + " ")
        lines += [".SS " + _roff(path), f"\\fBossl\\-vault {_roff(path)}\\fR {_roff(usage)}"]
        lines += [".PP", _paragraphs(command.help or "")]
        lines += _options(ctx, command)
    lines += [".SH EXIT STATUS", *[f".TP\n{k}\n{_roff(v)}" for k, v in EXIT_CODES.items()]]
    lines += [
        ".SH ENVIRONMENT",
        ".TP\nOSSL_VAULT_DIR\nThe vault directory.",
        ".TP\nOSSL_VAULT_IDENTITY\nColon\\-separated private key files to read with.",
        ".TP\nOSSL_VAULT_AGENT\nThe socket of a running agent.",
        ".TP\nEDITOR, VISUAL\nThe editor of \\fBedit\\fR.",
        ".TP\nNO_COLOR\nWhen set, no colour is printed.",
        ".SH SEE ALSO",
        "\\fBopenssl\\fR(1); docs/format.md, which tells how to recover any secret "
        "with openssl alone.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # make man: python -m ossl_vault.cli.shell man|bash|zsh|fish
    what = sys.argv[1] if len(sys.argv) > 1 else "man"
    sys.stdout.write(man_page() if what == "man" else completion_script(what))
