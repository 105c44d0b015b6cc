"""Make tests/vectors/v2-*.vec: format-2 layouts of format-1 vectors, and format 2's own
failures (run by hand; the output is committed).

    python tests/vectors/make_v2_vectors.py

A v2 vector's vault is a list of files (docs/format.md section 9): each starts
with a line ``---file PATH`` and holds the file's bytes up to the next section.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ["multi-success", "rsa-success", "passphrase-success", "password-success",
           "mac-flipped", "no-match", "rsa-wrap-flipped", "recipient-fpr-flipped",
           "wrong-password", "meta-state-success", "state-deleted-without-purge",
           "meta-non-canonical"]  # fmt: skip


def split(vault: bytes) -> dict[str, bytes]:
    """The format-2 files of a format-1 vault.tsv (format.md section 2.8)."""
    lines = vault.decode().splitlines(keepends=True)[1:]
    files = {"recipients.tsv": "ossl-vault\t2\n"}
    for line in lines:
        kind, name = line.split("\t", 2)[:2]
        path = "recipients.tsv" if kind == "recipient" else f"secrets/{name}.tsv"
        files[path] = files.get(path, "") + line
    return {k: v.encode() for k, v in files.items()}


def write(stem: str, head: bytes, files: dict[str, bytes], blobs: bytes) -> None:
    body = b"".join(b"---file " + p.encode() + b"\n" + d for p, d in files.items())
    (HERE / f"v2-{stem}.vec").write_bytes(head + b"\n\n" + body + blobs)


def main() -> None:
    for stem in SOURCES:
        head, _, body = (HERE / f"{stem}.vec").read_bytes().partition(b"\n\n")
        vault, sep, blobs = body.partition(b"---blob ")
        write(stem, head, split(vault), sep + blobs)
    head, _, body = (HERE / "multi-success.vec").read_bytes().partition(b"\n\n")
    vault, sep, blobs = body.partition(b"---blob ")
    files = split(vault)
    name = head.split(b"name: ")[1].split(b"\n")[0].decode()
    own = f"secrets/{name}.tsv"
    head = head.replace(b"expect: success", b"expect: integrity failure")
    head = b"\n".join(x for x in head.split(b"\n") if not x.startswith(b"value-b64"))
    foreign = dict(files)  # a line of another secret in this secret's file
    foreign[own] = files[own].replace(f"ledger\t{name}\t".encode(), b"ledger\tapp/other\t")
    write("foreign-line", head, foreign, sep + blobs)
    unsorted = dict(files)
    lines = files[own].splitlines(keepends=True)
    unsorted[own] = b"".join([lines[1], lines[0], *lines[2:]])
    write("unsorted-file", head.replace(b"integrity failure", b"format error"), unsorted,
          sep + blobs)  # fmt: skip
    future = dict(files)
    future["recipients.tsv"] = files["recipients.tsv"].replace(
        b"ossl-vault\t2\n", b"ossl-vault\t3\n"
    )
    write("version-3-header", head.replace(b"integrity failure", b"format error"), future,
          sep + blobs)  # fmt: skip


if __name__ == "__main__":
    main()
