"""Tables that never break a host URL or a model name mid-token, at any terminal width.

Cells that hold tokens (addresses, model names) are `no_wrap`; when the terminal
is too narrow for the whole table, the same rows are printed as a list instead,
one record a block, so an 80-column terminal shows every name whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

__all__ = ["FittedTable"]


class FittedTable:
    """A table of `columns` and `rows`; the list form when the table would not fit."""

    def __init__(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                 wrap: Sequence[str] = ()) -> None:
        self.title = title
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.wrap = set(wrap)  # columns of prose (a down host's reason) that may wrap between words

    def table(self) -> Table:
        table = Table(title=self.title, expand=False)
        for name in self.columns:
            table.add_column(name, no_wrap=name not in self.wrap)
        for row in self.rows:
            table.add_row(*row)
        return table

    def _listing(self) -> Iterator[Text]:
        yield Text(self.title, style="italic")
        for row in self.rows:
            head, *rest = row
            yield Text.assemble(_text(head), style="bold")
            for name, cell in zip(self.columns[1:], rest, strict=True):
                label = f"  {name}: "
                for line in _text(cell).split("\n"):
                    if line.plain.strip() and line.plain != "-":
                        yield Text.assemble(label, line)
                        label = " " * len(label)  # a list cell's next lines line up under its first

    def width(self) -> int:
        """Columns the table needs with no token broken: each column's longest line (longest word for
        prose columns), plus a border and a space each side of every cell."""
        need = 1
        for i, name in enumerate(self.columns):
            cells = [Text(name), *(_text(row[i]) for row in self.rows)]
            pieces = (p for c in cells for p in (c.plain.split() if name in self.wrap else c.plain.split("\n")))
            need += max((Text(p).cell_len for p in pieces), default=1) + 3
        return need

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.width() <= options.max_width:
            yield self.table()
        else:
            yield from self._listing()


def _text(cell: Any) -> Text:
    return cell if isinstance(cell, Text) else Text(str(cell))
