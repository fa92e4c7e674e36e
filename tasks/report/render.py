"""Rendering the report's sections to Markdown and to one self-contained HTML page (plots inlined as base64)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

from genreflow.tasks.report.document import Block, Bullets, Section, Table
from genreflow.tasks.report.plots import Plot
from genreflow.tasks.run_folder import PLOTS_DIR


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    parts = [f"# {title}\n"]
    for section in sections:
        parts.append(f"## {section.title}\n")
        parts.extend(_markdown_block(block) for block in section.blocks)
    return "\n".join(parts)


def _markdown_block(block: Block) -> str:
    if isinstance(block, Table):
        lines = [_markdown_row(block.headers), _markdown_row(tuple("---" for _ in block.headers))]
        return "\n".join(lines + [_markdown_row(row) for row in block.rows]) + "\n"
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items) + "\n"
    if isinstance(block, Plot):
        return f"![{block.caption}]({PLOTS_DIR}/{block.name}.png)\n"
    return f"{block}\n"


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f0f3f7; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { font-size: 0.9em; color: #555; }
"""


def render_html(title: str, sections: Sequence[Section]) -> str:
    """One self-contained page: inline style, plots as base64 PNG, nothing fetched from anywhere."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body.extend(_html_block(block) for block in section.blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_block(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.headers)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Plot):
        data = base64.b64encode(block.png).decode("ascii")
        caption = html.escape(block.caption)
        image = f'<img src="data:image/png;base64,{data}" alt="{caption}">'
        return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"
    return f"<p>{html.escape(block)}</p>"


FIGURE_LINK = re.compile(r"!\[([^\]]*)\]\((" + PLOTS_DIR + r"/[^)]+)\)")


def markdown_without_figures(markdown: str) -> str:
    """The report's Markdown for places that cannot show the local plot files (the Prefect UI)."""
    return FIGURE_LINK.sub(r"*Figure (in report.html and \2): \1*", markdown)
