"""Plain text tables for `list`, `audit`, `recipient list`, `import` and `remote`.

The layout is the one users and scripts already read: a header line, a line
of dashes under each column, then one line per row; columns left-aligned,
two spaces apart, each at least two wider than its header; cells stripped
of surrounding spaces, lines of trailing ones. Printing 10,000 rows takes a
few milliseconds, where a general table library spent half a second guessing
each cell's type.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(rows: Iterable[Sequence[object]], headers: Sequence[str]) -> str:
    """The rows under ``headers``, as text without a final newline."""
    cells = [["" if c is None else str(c).strip() for c in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"a row of {len(row)} cells under {len(headers)} headers")
    columns = list(zip(*cells, strict=True)) if cells else [() for _ in headers]
    widths = [
        max(len(h) + 2, max(map(len, col), default=0))
        for h, col in zip(headers, columns, strict=True)
    ]
    shape = "  ".join(f"{{:<{w}}}" for w in widths)  # one format a line: each cell padded
    out = [shape.format(*headers).rstrip(), "  ".join("-" * w for w in widths)]
    out += [shape.format(*row).rstrip() for row in cells]
    return "\n".join(out)
