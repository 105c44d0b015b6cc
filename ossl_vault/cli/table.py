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
    widths = [len(h) + 2 for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)
