"""Database URLs as we show them: every password masked.

A PostgreSQL URL can carry a password in the user info (``user:pw@``) and in query parameters
(libpq reads ``?password=`` and ``?sslpassword=``). SQLAlchemy's
``render_as_string(hide_password=True)`` hides only the first, so every URL that is printed,
logged or written to a file goes through :func:`masked_url`.
"""

from __future__ import annotations

import re
from urllib.parse import quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["PASSWORD_MASK", "masked_url"]

PASSWORD_MASK = "***"
"""What a password is replaced with wherever a URL is shown, logged or written."""

_SECRET_QUERY_KEY = re.compile(r"(?i)^(.*password|pass|passwd|pwd)$")
"""Query parameters that carry a password: ``password``, ``sslpassword``, ``PASSWORD``, ...
(libpq takes ``?password=`` and ``?sslpassword=`` as well as ``user:pw@``)."""

_SECRET_IN_TEXT = re.compile(r"(?i)(pass|pwd)[a-z]*\s*=")


def masked_url(url: str | URL) -> str:
    """Return ``url`` as text with every password in it replaced by ``***``.

    A password can sit in the user info (``user:pw@``) or in a query parameter
    (``?password=``, ``?sslpassword=``, any case): both are masked. Use this wherever a URL
    is printed, logged or written to a file.

    Args:
        url: A database URL, parsed or not.

    Returns:
        The masked URL; ``<unparsable URL>`` for text that cannot be parsed and might hold a
        password (an ``@`` or a password parameter), else the text unchanged.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        text = str(url)
        hides = "@" in text or _SECRET_IN_TEXT.search(text) is not None
        return "<unparsable URL>" if hides else text
    query = {
        key: PASSWORD_MASK if _SECRET_QUERY_KEY.match(key) else value
        for key, value in parsed.query.items()
    }
    rendered = parsed.set(query=query).render_as_string(hide_password=True)
    # render_as_string quotes query values; show the mask as it is shown in the user info.
    return rendered.replace(quote_plus(PASSWORD_MASK), PASSWORD_MASK)
