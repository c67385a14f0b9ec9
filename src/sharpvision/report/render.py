"""A report's blocks as Markdown (figures linked as ``figures/*.png``) and as one self-contained HTML page (figures
embedded as data URIs, the style inline: it reads offline, mailed or archived as one file)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from sharpvision.report.doc import Block, Code, Figure, Heading, Table, Terms

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #fff;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #d6dae2; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #d6dae2; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f1f3f7; } tr:nth-child(even) td { background: #fafbfc; }
caption { caption-side: bottom; text-align: left; color: #555; padding-top: .3em; }
pre { background: #f1f3f7; padding: .8em; overflow-x: auto; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #e3e6ec; }
figcaption { color: #555; font-size: 13px; }
.badge { font-weight: 600; padding: .1em .5em; border-radius: .8em; white-space: nowrap; }
.holds { background: #d9f2de; color: #17642b; } .contradicted { background: #fbdcdc; color: #9b1c1c; }
.inconclusive { background: #fdf0cc; color: #7a5a00; } .not-measured { background: #e8eaee; color: #555; }
dt { font-family: ui-monospace, monospace; font-weight: 600; } dd { margin: 0 0 .5em 1.5em; }
"""


def to_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; figures are numbered and linked by relative path."""
    out, figures = [], 0
    for block in blocks:
        if isinstance(block, Figure):
            figures += 1
            out.append(f"![{block.caption}](figures/{block.name})\n\n*Figure {figures}: {block.caption}*")
        else:
            out.append(_markdown(block))
    return "\n\n".join(out) + "\n"


def _markdown(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Code):
        return "```\n" + "\n".join(block.lines) + "\n```"
    if isinstance(block, Table):
        lines = [_row(block.header), _row(tuple("---" for _ in block.header)), *map(_row, block.rows)]
        return "\n".join(lines) + (f"\n\n*{block.caption}*" if block.caption else "")
    if isinstance(block, Terms):
        return "\n".join(f"- **{term}**: {meaning}" for term, meaning in block.items)
    return block.text


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def to_html(blocks: list[Block], figures: Path) -> str:
    """One page: the first heading is its title; every figure is read from ``figures`` and embedded."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "sharpvision report")
    body, count = [], 0
    for block in blocks:
        if isinstance(block, Figure):
            count += 1
            data = base64.b64encode((figures / block.name).read_bytes()).decode("ascii")
            caption = html.escape(f"Figure {count}: {block.caption}")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                        f"<figcaption>{caption}</figcaption></figure>")
        else:
            body.append(_html(block))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _html(block: Block) -> str:
    e = html.escape
    if isinstance(block, Heading):
        anchor = f' id="{e(block.id)}"' if block.id else ""
        return f"<h{block.level}{anchor}>{e(block.text)}</h{block.level}>"
    if isinstance(block, Code):
        return "<pre><code>" + e("\n".join(block.lines)) + "</code></pre>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Terms):
        return "<dl>" + "".join(f"<dt>{e(t)}</dt><dd>{e(m)}</dd>" for t, m in block.items) + "</dl>"
    return f"<p>{e(block.text)}</p>"


def _html_table(table: Table) -> str:
    def cell(i: int, text: str) -> str:
        if i == table.badge:
            return f'<td><span class="badge {html.escape(text.replace(" ", "-"))}">{html.escape(text)}</span></td>'
        return f"<td>{html.escape(text)}</td>"

    anchor = f' id="{html.escape(table.id)}"' if table.id else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in table.rows)
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table{anchor}>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
