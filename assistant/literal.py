"""Text from documents, made literal for the renderers that show it: Markdown (the Streamlit page) and
Rich markup (the CLI). Nothing a document or a file name says may become a link, an image, HTML, a
style or a terminal control sequence.

    st.markdown(literal.markdown(citation.title))      # "![x](http://host/p)" shows as those characters
    st.markdown(literal.answer(answer.text))           # the same, keeping our own "**Target:**" labels
    f"<div>{literal.html(chunk_text)}</div>"            # inside HTML the page writes itself
    console.print(literal.console(answer.text))        # "[/bold]" and "[link=...]" print as written

No library escapes Markdown for Streamlit (its own renderer is react-markdown with GFM, math and colour
directives), so the characters that start those constructs are backslash-escaped here, as CommonMark
allows for any ASCII punctuation.
"""

from __future__ import annotations

import re

# Starts inline constructs anywhere in a line: escapes, code, emphasis, links and images, HTML and
# autolinks, GFM tables and strikethrough, math, Streamlit's ":colour[...]" and ":icon:" directives,
# e-mail autolinks and entity references.
_INLINE = re.compile(r"([\\`*_\[\]<>|~$:@&!{}])")
# Starts a block when first on a line: headings, quotes, list items, setext and thematic breaks.
_LINE_START = re.compile(r"^([ \t]*)([#>+\-=]|\d+[.)])", re.M)
# GFM turns bare URLs, "www." domains and e-mail addresses into links after escapes are resolved (on
# the text itself), so a backslash cannot stop it; an invisible WORD JOINER inside the scheme, after
# "www" or after "@" does, and changes nothing a reader sees.
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto|xmpp)(?=\\:)|\b(www)(?=\.)|(\\@)")
WORD_JOINER = "\u2060"
# Our own formatting in answer text (answer.py): bold labels such as "**Target:**" and "- " list items.
_OWN_LABEL = re.compile(r"\\\*\\\*([A-Z][A-Za-z ]{0,30})\\:\\\*\\\*")
_OWN_BULLET = re.compile(r"^\\- ", re.M)
# HTML's own specials and Markdown's inline ones, each as a numeric character reference, in one pass.
_HTML = {ord(c): f"&#{ord(c)};" for c in "&<>\"'\\`*_[]|~$:@!{}"}
# C0 controls but tab and newline, and DEL: a terminal acts on them (ESC starts colour and hyperlinks).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def markdown(text: str) -> str:
    r"""`text` as Markdown that renders exactly as `text`, whatever it holds.

    >>> markdown("![x](http://host/p) costs $5")
    '\\!\\[x\\](http\u2060\\://host/p) costs \\$5'
    >>> markdown("# Title\n1. item")
    '\\# Title\n1\\. item'
    """
    escaped = _INLINE.sub(r"\\\1", text)
    escaped = _AUTOLINK.sub(lambda m: m.group(0) + WORD_JOINER, escaped)
    return _LINE_START.sub(lambda m: m.group(1) + _escape_marker(m.group(2)), escaped)


def answer(text: str) -> str:
    r"""An answer's text as Markdown: everything literal except our own bold labels and list items.

    >>> answer("**Target:** 76% [1]\n- “<img src=x>” [2]")
    '**Target:** 76% \\[1\\]\n- “\\<img src=x\\>” \\[2\\]'
    """
    escaped = _OWN_LABEL.sub(r"**\1:**", markdown(text))
    return _OWN_BULLET.sub("- ", escaped)


def code(text: str) -> str:
    """`text` as an inline code span: a fence longer than any backtick run in it, so it cannot close early.

    >>> code("a`b.txt")
    '`` a`b.txt ``'
    """
    text = " ".join(_CONTROL.sub("", text).split("\n"))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}" if longest else f"{fence}{text}{fence}"


def html(text: str) -> str:
    """`text` as the text of an HTML element: no tag can open, and should the HTML ever be read as
    Markdown, no link or image either (the characters that would start one are character references).

    >>> html('<img src=x> ![a](b) A&E')
    '&#60;img src=x&#62; &#33;&#91;a&#93;(b) A&#38;E'
    """
    return text.translate(_HTML)


def console(text: str) -> str:
    r"""`text` for a Rich console: markup escaped and terminal control characters removed.

    >>> console("[/bold] [link=http://x]y[/link]\x1b]8;;")
    '\\[/bold] \\[link=http://x]y\\[/link]]8;;'
    """
    from rich.markup import escape

    return escape(_CONTROL.sub("", text))


def terminal_markdown(text: str) -> str:
    r"""An answer's text as Markdown for Rich's renderer in a terminal: as `answer`, control characters removed.

    Rich does not turn bare URLs into links, so the word joiners that stop a browser's autolinks are left
    out: a URL copied from the terminal stays the URL.

    >>> terminal_markdown("**Target:** 76% [1]\n“Improve” [1]")
    '**Target:** 76% \\[1\\]  \n“Improve” \\[1\\]'
    """
    # Two spaces before each line break: Markdown would join the lines of an answer into one.
    return answer(_CONTROL.sub("", text)).replace(WORD_JOINER, "").replace("\n", "  \n")


def _escape_marker(marker: str) -> str:
    """The block marker with its punctuation escaped ("1." -> "1\\.")."""
    return marker[:-1] + "\\" + marker[-1]
