"""URLs as they may be printed or saved: without the secrets people put in them."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

REDACTED = "REDACTED"


def redact_url(url: str | None) -> str | None:
    """The URL with its user:password, every query value and its fragment replaced.

    Tokens travel in all three (`https://user:key@host`, `?api_key=...`, `#token=...`);
    the scheme, host, port, path and query keys stay, which is what a reader needs to
    tell endpoints apart. A URL that cannot be parsed is not shown at all.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a bracket that does not close
        return f"<a URL that cannot be parsed ({len(url)} characters)>"
    netloc = parts.netloc.rpartition("@")[2]  # host[:port] without user:password
    query = "&".join(
        f"{piece.partition('=')[0]}={REDACTED}" if "=" in piece else REDACTED  # a bare token
        for piece in parts.query.split("&")
        if piece
    )
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
