"""Number glued tables as tables ("Table 2"), not as figures ("Fig. 7").

myst-nb's ``glue:figure`` wraps whatever was glued in a figure, so a glued DataFrame is
captioned "Fig. N" and shares the figures' count. This extension turns, while each page is read,
every figure whose content is an HTML table (and no image) into a ``glued_table`` node, which
Sphinx numbers under ``table`` (``numfig_format['table']``). ``_static/glued-tables.css`` puts
its caption above the table, where tables carry it. Two layout classes follow from the table's
cells: ``compact`` (every cell short, e.g. ``0.460 ± 0.012``: cells never wrap) and
``full-width`` (the theme's class: a table of many columns also takes the right margin).
"""
from __future__ import annotations

import re

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx.writers.html5 import HTML5Translator


class glued_table(nodes.figure):  # noqa: N801 (docutils names nodes in lower case)
    """A figure made by ``glue:figure`` around a glued table."""


def holds_table(figure: nodes.figure) -> bool:
    """Whether ``figure`` shows an HTML table and no image (a glued DataFrame or Styler)."""
    if any(True for _ in figure.findall(nodes.image)):
        return False
    return any("<table" in raw.astext() for raw in figure.findall(nodes.raw)
               if "html" in raw.get("format", "").split())


SHORT_CELL = 24    # characters: a table whose cells are all this short is "compact"
MANY_COLUMNS = 10  # cells in a body row from which a table is "full-width"


def layout_classes(figure: nodes.figure) -> list[str]:
    html = " ".join(raw.astext() for raw in figure.findall(nodes.raw))
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)]
    body = html[html.find("<tbody"):]
    row = re.search(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    columns = len(re.findall(r"<t[dh][\s>]", row.group(1))) if row else 0
    return ((["compact"] if cells and max(map(len, cells)) <= SHORT_CELL else [])
            + (["full-width"] if columns >= MANY_COLUMNS else []))


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
