"""What a user or a submission wrote, shown as text: the one escaper of the app.

Model names, teams, file names, failure reasons and check details can come from a
submission, or quote its own error messages; in a Markdown component they must not become
links, images, emphasis, table cells or HTML. Every such text goes through :func:`plain`.
"""

from __future__ import annotations

import re

#: Characters Markdown (and the HTML it allows) gives a meaning to.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")


def plain(text: object) -> str:
    """``text`` (``str()`` of it) shown as it is in Markdown, a table cell or a link's text
    included: every character that means something there is backslash-escaped, so the
    rendered text is the input, character for character, and no markup."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
