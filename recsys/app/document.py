"""A report as a list of blocks, rendered twice: Markdown (images linked) and one self-contained
HTML file (images inlined as base64 PNG data URIs, so it opens anywhere on its own)."""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str  # may hold `code` spans
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str  # a paragraph; may hold `code` spans


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Image:
    path: str  # a PNG, relative to the report's folder
    alt: str


Block = Heading | Text | Table | Image


def markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append("\n".join(["| " + " | ".join(b.header) + " |", "|---" * len(b.header) + "|",
                                  *("| " + " | ".join(row) + " |" for row in b.rows)]))
        else:
            out.append(f"![{b.alt}]({b.path})")
    return "\n\n".join(out) + "\n"


def to_html(blocks: Sequence[Block], folder: Path, title: str) -> str:
    """One HTML page; every Image is read from `folder` and inlined."""
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline(c)}</th>" for c in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            data = base64.b64encode((folder / b.path).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}">'
                        f"<figcaption>{html.escape(b.alt)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em;"
         "text-align:right}th:first-child,td:first-child{text-align:left}img{max-width:100%}"
         "code{background:#f3f3f3;padding:0 .2em}figcaption{color:#666;font-size:90%}")


def _inline(text: str) -> str:
    """Escaped text with `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
