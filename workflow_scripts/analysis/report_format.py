"""Number formats and the self-contained HTML page of the report tables, so every table reads the same way.

Formats: AUCs and other statistics with 2 decimals, p-values with 2 significant digits or ``<0.001``, intervals as
``[low, high]``, counts as integers; a missing value (NaN, None, '') is shown as MISSING. A page is one HTML file
with its title, a one-line note and the table (pandas Styler, cells HTML-escaped), styled inline: no external CSS,
script or image, so Snakemake's report can embed it as it is.
"""

from __future__ import annotations

import html
import math

import pandas as pd
from pandas.io.formats.style import Styler

MISSING = "–"
P_FLOOR = 0.001
TABLE_STYLES = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 13px;"},
    {"selector": "th", "props": "background: #eef1f5; text-align: left; padding: 4px 8px; "
                                "border-bottom: 2px solid #99a; vertical-align: bottom;"},
    {"selector": "td", "props": "padding: 3px 8px; border-bottom: 1px solid #dde; vertical-align: top;"},
    {"selector": "tbody tr:nth-child(even)", "props": "background: #f8f9fb;"},
]
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>body {{ font-family: Helvetica, Arial, sans-serif; margin: 16px; color: #222; }}
h1 {{ font-size: 18px; margin: 0 0 6px 0; }} p.note {{ font-size: 13px; color: #555; max-width: 70em; }}</style>
</head>
<body>
<h1>{title}</h1>
<p class="note">{note}</p>
{table}
</body>
</html>
"""


def is_missing(value: object) -> bool:
    """True for the cells a table leaves empty: None, NaN and ''."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def format_number(value: object, decimals: int = 2) -> str:
    """A statistic (AUC, rho, HTI, hazard ratio) with a fixed number of decimals, so columns line up."""
    return MISSING if is_missing(value) else f"{float(value):.{decimals}f}"


def format_p(value: object) -> str:
    """A p- or q-value with 2 significant digits, or <0.001: more digits would claim a precision tests lack."""
    if is_missing(value):
        return MISSING
    value = float(value)
    if value < P_FLOOR:
        return f"<{P_FLOOR:g}"
    return f"{value:#.2g}"


def format_count(value: object) -> str:
    """A count as an integer (the TSVs hold floats such as 12.0 when a column has a NaN)."""
    return MISSING if is_missing(value) else str(int(round(float(value))))


def format_ci(low: object, high: object, decimals: int = 2) -> str:
    """An interval as [low, high]; missing when either end is."""
    if is_missing(low) or is_missing(high):
        return MISSING
    return f"[{format_number(low, decimals)}, {format_number(high, decimals)}]"


def format_estimate(value: object, low: object, high: object, decimals: int = 2) -> str:
    """An estimate with its interval, e.g. 0.85 [0.70, 0.95]; the interval is left out when it is missing."""
    if is_missing(value):
        return MISSING
    interval = format_ci(low, high, decimals)
    estimate = format_number(value, decimals)
    return estimate if interval == MISSING else f"{estimate} {interval}"


def format_mean_range(mean: object, low: object, high: object, decimals: int = 2) -> str:
    """A mean with its range, e.g. 0.80 (0.75–0.85), the form of the paper's Table 1 for the split models."""
    if is_missing(mean):
        return MISSING
    return f"{format_number(mean, decimals)} ({format_number(low, decimals)}–{format_number(high, decimals)})"


def format_percent(value: object, decimals: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    return MISSING if is_missing(value) else f"{100 * float(value):.{decimals}f}%"


def format_text(value: object) -> str:
    """A text cell; missing values become MISSING rather than 'nan'."""
    return MISSING if is_missing(value) else str(value)


def html_page(display: pd.DataFrame, title: str, note: str, table_id: str) -> str:
    """The whole HTML page of one table: title, note and the table, styled inline, byte-identical on reruns."""
    styler = Styler(display, uuid=table_id, cell_ids=False)
    styler = styler.hide(axis="index").format(escape="html").format_index(escape="html", axis=1)
    table = styler.set_table_styles(TABLE_STYLES).to_html()
    return PAGE.format(title=html.escape(title), note=html.escape(note), table=table)
