"""The one way stored text reaches HTML: :func:`escape`.

Everything a study holds is written by whoever can write its storage (a shared database): the
study's name, parameter names and categorical values, attributes, notes, error texts, metric names,
the recipe's record. The report and the figures put such text into HTML only through
:func:`escape`; markup that tunelab builds itself around escaped parts is a :class:`Markup`,
which the report's tables take as it is.

plotly reads a few HTML tags in figure text (titles, axis titles, legend names, hover text,
category labels) and turns entities back into the characters: text escaped here shows as typed.
It knows ``&lt; &gt; &amp;`` and numeric entities but not ``&quot;``, so a double quote becomes
``&#34;`` (the same character in HTML, text or attribute).
"""

from __future__ import annotations

import html


class Markup(str):
    """HTML that tunelab built, from constant markup and :func:`escape`'d values: taken as it is."""

    __slots__ = ()


def escape(value: object) -> str:
    """``str(value)`` with ``& < > " '`` escaped: safe as HTML text, inside a quoted attribute, and as
    plotly text (which shows it as typed)."""
    return html.escape(str(value), quote=True).replace("&quot;", "&#34;")


__all__ = ["Markup", "escape"]
