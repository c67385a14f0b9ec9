"""A report's blocks as Markdown (figures linked as ``figures/*.png``) and as one self-contained HTML page (figures
embedded as data URIs, the style inline: it reads offline, mailed or archived as one file)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from sharpvision.report.doc import Banner, Block, Code, Details, Figure, Heading, Table, Terms

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #fff;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #d6dae2; padding-bottom: .2em; margin-top: 2em; }
.frame { max-width: 100%; overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 13px; }
table.fit { width: 100%; } table.fit td { overflow-wrap: break-word; }
table.wide td, table.wide th { white-space: nowrap; }
th, td { border: 1px solid #d6dae2; padding: .3em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f1f3f7; } tr:nth-child(even) td { background: #fafbfc; }
caption { caption-side: bottom; text-align: left; color: #555; padding-top: .3em; }
pre { background: #f1f3f7; padding: .8em; overflow-x: auto; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #e3e6ec; }
figcaption { color: #555; font-size: 13px; }
details { margin: 1em 0; } summary { cursor: pointer; color: #35507a; }
.banner { background: #fff4d6; border: 1px solid #e6c35c; padding: .6em 1em; font-weight: 600; }
.badge { font-weight: 600; padding: .1em .5em; border-radius: .8em; white-space: nowrap; }
.holds { background: #d9f2de; color: #17642b; } .contradicted { background: #fbdcdc; color: #9b1c1c; }
.inconclusive { background: #fdf0cc; color: #7a5a00; } .not-measured, .undecided { background: #e8eaee; color: #555; }
.badge.smoke { background: #e8eaee; color: #6b7280; }
dt { font-family: ui-monospace, monospace; font-weight: 600; } dd { margin: 0 0 .5em 1.5em; }
"""


def to_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; figures are numbered and linked by relative path."""
    return "\n\n".join(_markdown_blocks(blocks, [0])) + "\n"


def _markdown_blocks(blocks: list[Block] | tuple[Block, ...], count: list[int]) -> list[str]:
    out = []
    for block in blocks:
        if isinstance(block, Figure):
            count[0] += 1
            out.append(f"![{block.caption}](figures/{block.name})\n\n*Figure {count[0]}: {block.caption}*")
        elif isinstance(block, Details):  # GitHub folds it too; blank lines keep the Markdown inside it Markdown
            out.append(f"<details><summary>{html.escape(block.summary, quote=False)}</summary>\n\n"
                       + "\n\n".join(_markdown_blocks(block.blocks, count)) + "\n\n</details>")
        else:
            out.append(_markdown(block))
    return out


def _markdown(block: Block) -> str:
    if isinstance(block, Banner):
        return f"> **{block.text}**"
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
    body = _html_blocks(blocks, figures, [0])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _html_blocks(blocks: list[Block] | tuple[Block, ...], figures: Path, count: list[int]) -> list[str]:
    body = []
    for block in blocks:
        if isinstance(block, Figure):
            count[0] += 1
            data = base64.b64encode((figures / block.name).read_bytes()).decode("ascii")
            caption = html.escape(f"Figure {count[0]}: {block.caption}")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                        f"<figcaption>{caption}</figcaption></figure>")
        elif isinstance(block, Details):
            body.append(f"<details><summary>{html.escape(block.summary)}</summary>\n"
                        + "\n".join(_html_blocks(block.blocks, figures, count)) + "\n</details>")
        else:
            body.append(_html(block))
    return body


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
    if isinstance(block, Banner):
        return f'<p class="banner" role="note">{e(block.text)}</p>'
    return f"<p>{e(block.text)}</p>"


def _html_table(table: Table) -> str:
    """A table in a frame that scrolls sideways when the table is wider than the page (the page itself never
    does); a table that should fit wraps its cells instead."""
    def cell(i: int, text: str) -> str:
        if i == table.badge:
            kind = "smoke" if table.grey else html.escape(text.replace(" ", "-"))
            return f'<td><span class="badge {kind}">{html.escape(text)}</span></td>'
        return f'<td class="num">{html.escape(text)}</td>' if _numeric(text) else f"<td>{html.escape(text)}</td>"

    anchor = f' id="{html.escape(table.id)}"' if table.id else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in table.rows)
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return (f'<div class="frame"><table{anchor} class="{"wide" if table.wide else "fit"}">{caption}'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>")


def _numeric(text: str) -> bool:
    """A cell that is a number (or a number ± a spread): right-aligned, never broken."""
    return bool(text) and text.replace(" ± ", "").replace(".", "").replace("-", "").replace("+", "").replace(
        "e", "").replace("(n=", "").replace(")", "").replace(" ", "").isdigit()
