"""Number glued tables as tables ("Table 2"), not as figures ("Fig. 7").

myst-nb's ``glue:figure`` wraps whatever was glued in a figure, so a glued DataFrame is
captioned "Fig. N" and shares the figures' count. This extension turns, while each page is read,
every figure whose content is an HTML table (and no image) into a ``glued_table`` node, which
Sphinx numbers under ``table`` (``numfig_format['table']``). ``_static/glued-tables.css`` puts
its caption above the table, where tables carry it. Two layout classes follow from the table's
cells: ``full-width`` (the theme's class: a table wider than the text column also takes the
right margin) and ``compact`` (short cells, e.g. ``0.460 ± 0.012``, that fit that width on one
line each: they never wrap).
"""
from __future__ import annotations

import re

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx.writers.html5 import HTML5Translator


class glued_table(nodes.figure):  # noqa: N801 (docutils names nodes in lower case)
    """A figure made by ``glue:figure`` around a glued table."""


def raw_html(figure: nodes.figure) -> str:
    """The HTML that myst-nb pasted into ``figure`` (empty for images and plain text)."""
    return " ".join(raw.astext() for raw in figure.findall(nodes.raw)
                    if "html" in raw.get("format", "").split())


def holds_table(figure: nodes.figure) -> bool:
    """Whether ``figure`` shows an HTML table and no image (a glued DataFrame or Styler)."""
    return not any(True for _ in figure.findall(nodes.image)) and "<table" in raw_html(figure)


SHORT_CELL = 24       # characters: a table whose cells are all this short may keep them on one line
CHAR_PX, PAD_PX = 7.6, 17  # rough width of a character and of a cell's padding at the tables' font
TEXT_PX, FULL_PX = 600, 900  # the text column, and the text column with the right margin (with room)


def _cells(row: str) -> list[str]:
    """The text of each <td>/<th> of one table row's HTML."""
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]


def layout_classes(figure: nodes.figure) -> list[str]:
    """``compact`` and ``full-width`` from an estimate of the table's width on one line per cell:
    wider than the text column takes the margin too; wider than that lets long cells wrap."""
    html = raw_html(figure)
    split = html.find("<tbody")
    if split < 0:
        return []
    rows = [_cells(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html[split:], re.S)]
    header = [_cells(row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html[:split], re.S)][-1:]
    if not rows:
        return []
    # a header wraps between words; the column labels are the last header row
    rows += [[max(map(len, h.split()), default=0) * "x" for h in row] for row in header]
    columns = max(map(len, rows))
    longest = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(columns)]
    width = sum(CHAR_PX * n + PAD_PX for n in longest)
    short = max(longest) <= SHORT_CELL
    return ((["compact"] if short and width <= FULL_PX else [])
            + (["full-width"] if width > TEXT_PX else []))


class NumberGluedTables(SphinxTransform):
    # after myst-nb has pasted the glued outputs; before the std domain collects the labels
    default_priority = 800

    def apply(self, **kwargs) -> None:
        for figure in list(self.document.findall(nodes.figure)):
            if type(figure) is not nodes.figure or not holds_table(figure):
                continue
            table = glued_table(figure.rawsource, *figure.children, **figure.attributes)
            table["classes"] += ["glued-table", *layout_classes(figure)]
            figure.replace_self(table)
            for node_id in table["ids"]:  # labels and numbers look the node up by id
                self.document.ids[node_id] = table


def setup(app):
    app.add_enumerable_node(glued_table, "table",
                            html=(HTML5Translator.visit_figure, HTML5Translator.depart_figure))
    app.add_transform(NumberGluedTables)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
