"""Which URLs a website crawl visits (issue 15, "Website sources: a crawler that behaves"): URL
normalisation, the de-duplication key, and the crawl's scope (same site, include/exclude path
patterns, depth). Pure functions of strings: no network, no clock.

Two forms of a URL, on purpose:

* `normalize_url` gives the URL that is *fetched*: RFC 3986 section 6.2.2 syntax-based
  normalisation (lower-case scheme and host, no default port, dot segments removed,
  percent-encoding upper-cased and unreserved characters decoded, an empty path as ``/``), no
  fragment (never sent to a server), no user information (never sent on a user's behalf),
  tracking parameters removed (`TRACKING_PARAMETERS`, ``utm_*``) and the query's parameters
  sorted. The host is kept as written (``www.`` or not), since a site may answer on one only.
* `url_key` gives what two URLs must share to be the *same page*: the normalised URL without its
  scheme (``http`` and ``https`` of one page), without a leading ``www.`` and without a trailing
  slash on a path other than ``/`` (``/docs/`` is ``/docs``). The crawler fetches a page once
  per key.

Path patterns are **globs** (Python's `fnmatch`, case-sensitive) matched against the URL's path
only (no query): ``*`` matches any characters *including* ``/``, ``?`` one character, ``[abc]``
one of a set. ``/docs/*`` is everything under ``/docs/``; ``/docs*`` also ``/docs`` itself;
``*.pdf`` every PDF.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

TRACKING_PARAMETERS = frozenset(
    {
        "gclid",  # Google Ads
        "gbraid",
        "wbraid",
        "dclid",  # Google Display
        "gclsrc",
        "fbclid",  # Facebook
        "msclkid",  # Microsoft Ads
        "yclid",  # Yandex
        "twclid",  # X/Twitter
        "ttclid",  # TikTok
        "li_fat_id",  # LinkedIn
        "igshid",  # Instagram
        "mc_cid",  # Mailchimp
        "mc_eid",
        "_ga",  # Google Analytics cross-domain
        "_gl",
        "_hsenc",  # HubSpot
        "_hsmi",
        "__hssc",
        "__hstc",
        "__hsfp",
        "hsctatracking",
        "mkt_tok",  # Marketo
        "oly_anon_id",  # Omeda
        "oly_enc_id",
        "vero_id",  # Vero
        "vero_conv",
        "rb_clickid",
        "s_kwcid",  # Adobe
        "ef_id",
        "srsltid",  # Google Merchant
    }
)
"""Query parameters that identify a click or a campaign, not a page (compared lower-case); every
``utm_*`` parameter (Google Analytics' campaign parameters) is one too."""

DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = "-._~"  # RFC 3986 section 2.3, besides letters and digits
_ENCODED = re.compile(r"%[0-9a-fA-F]{2}")


def is_tracking_parameter(name: str) -> bool:
    """Whether a query parameter `name` is tracking (`TRACKING_PARAMETERS` or ``utm_*``)."""
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in TRACKING_PARAMETERS


def _normal_encoding(text: str, safe: str) -> str:
    """`text` with percent-encoding normalised (RFC 3986 section 6.2.2.2): escapes of unreserved
    characters decoded, other escapes upper-cased, characters outside `safe` and the unreserved
    set encoded (UTF-8). An escape of a reserved character stays an escape."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(0)[1:], 16))
        return char if char.isascii() and (char.isalnum() or char in _UNRESERVED) else match.group(0).upper()

    decoded_unreserved = _ENCODED.sub(one, text)
    # quote() leaves existing escapes alone when "%" is safe, and encodes spaces, non-ASCII, …
    return quote(decoded_unreserved, safe=safe + "%")


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The URL to fetch for `url` (resolved against `base` when relative), or None when it is no
    http(s) URL with a host or cannot be parsed.

    Args:
        url: an absolute or relative URL, as found in an ``href``, a sitemap or a redirect.
        base: the URL of the document it was found in (``<base href>`` already applied).

    The rules are the module's (RFC 3986 section 6.2.2; tracking parameters; no fragment, no
    user information). Idempotent: ``normalize_url(normalize_url(u)) == normalize_url(u)``.
    """
    text = url.strip()
    if not text or len(text) > 4096:
        return None
    try:
        absolute = urljoin(base, text) if base else text
        parts = urlsplit(absolute)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            return None
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:  # an IPv6 literal
        netloc = f"[{host.lower()}]"
    else:
        try:
            netloc = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
        except UnicodeError:
            return None
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    trailing = path.endswith("/")
    path = posixpath.normpath(path) if path != "/" else "/"
    if path.startswith("//"):  # normpath keeps a leading "//" (POSIX); a URL path does not need it
        path = "/" + path.lstrip("/")
    if trailing and not path.endswith("/"):
        path += "/"
    path = _normal_encoding(path, safe="/:@!$&'()*+,;=")
    pairs = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not is_tracking_parameter(name)
    ]
    pairs.sort(key=lambda pair: pair[0])  # stable: repeated names keep their order
    query = urlencode(pairs, quote_via=quote, safe="/:@!$'()*+,;")
    return urlunsplit((scheme, netloc, path, query, ""))


def site_host(host: str) -> str:
    """`host` (lower-case) without a leading ``www.``: ``www.example.com`` and ``example.com``
    are one site."""
    lowered = host.lower()
    return lowered[4:] if lowered.startswith("www.") and lowered.count(".") >= 2 else lowered


def url_key(url: str) -> str:
    """The de-duplication key of a URL already normalised (`normalize_url`): no scheme, the host
    without ``www.`` (port kept), and no trailing slash on a path other than ``/``."""
    parts = urlsplit(url)
    host = site_host(parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    path = parts.path.rstrip("/") or "/"
    return f"//{host}{path}" + (f"?{parts.query}" if parts.query else "")


def path_of(url: str) -> str:
    """The decoded path of `url` (``/`` when empty), what path patterns are matched against."""
    return unquote(urlsplit(url).path) or "/"


@dataclass(frozen=True)
class CrawlScope:
    """What one website crawl may visit, from its start URL (issue 15: "same site only (no other
    hosts; subdomains only if asked)").

    Attributes:
        start_url: the normalised start URL; its host (without ``www.``) is the site.
        include_subdomains: also visit hosts under the site (``docs.example.com`` for
            ``example.com``); the site itself always, with or without ``www.``.
        include_paths: globs (module docstring); when given, a path must match one of them.
        exclude_paths: globs; a path that matches one is not visited (exclusion wins).
        max_depth: links followed from the start URL at most (0: the start URL alone).
    """

    start_url: str
    include_subdomains: bool = False
    include_paths: Sequence[str] = field(default_factory=tuple)
    exclude_paths: Sequence[str] = field(default_factory=tuple)
    max_depth: int = 3

    @property
    def site(self) -> str:
        """The site's host: the start URL's, without ``www.`` (and with its port, if any)."""
        parts = urlsplit(self.start_url)
        host = site_host(parts.hostname or "")
        return f"{host}:{parts.port}" if parts.port is not None else host

    def same_site(self, url: str) -> bool:
        """Whether `url` (normalised) is on the crawl's site: the same host but for ``www.`` and
        the same port, or a subdomain of it when `include_subdomains`."""
        parts = urlsplit(url)
        host = site_host(parts.hostname or "")
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        site = self.site
        if host == site:
            return True
        return self.include_subdomains and host.endswith("." + site)

    def path_allowed(self, url: str) -> bool:
        """Whether the path of `url` passes the include and exclude globs (the start URL always
        does: a crawl begins there even when only its links are wanted)."""
        if url_key(url) == url_key(self.start_url):
            return True
        path = path_of(url)
        if any(fnmatchcase(path, pattern) for pattern in self.exclude_paths):
            return False
        return not self.include_paths or any(fnmatchcase(path, pattern) for pattern in self.include_paths)

    def depth_allowed(self, depth: int) -> bool:
        """Whether a URL found `depth` links away from the start URL is visited."""
        return 0 <= depth <= self.max_depth
