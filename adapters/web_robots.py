"""robots.txt for the crawler (RFC 9309, the Robots Exclusion Protocol): the adapter of the
`services.crawling.RobotsParser` port, parsing with protego.

protego implements RFC 9309's matching (the most specific rule wins, ``Allow`` over ``Disallow``
at equal length, ``*`` and ``$`` in paths, percent-encoding compared as RFC 9309 section 2.2.2
says) and the ``Crawl-delay`` and ``Sitemap`` extensions (not in RFC 9309; read by major
crawlers). The group that applies is the one whose ``User-agent`` names our product token
(``CharterBot``, case-insensitively) or else ``*``: a ``Crawl-delay`` in the ``*`` group does not
apply to a crawler that has its own group. What a *missing* or *unreachable* robots.txt means
(RFC 9309 section 2.3.1.3 and 2.3.1.4) is decided by the service (`services.crawling`), which
sees the status; this module only reads a file that was fetched.
"""

from __future__ import annotations

from collections.abc import Sequence

from protego import Protego

from adapters.web_fetch import AGENT_NAME


class ProtegoRules:
    """The rules of one robots.txt for our product token.

    Args:
        parsed: what protego parsed.
        agent: the product token matched against ``User-agent`` lines.
    """

    def __init__(self, parsed: Protego, agent: str = AGENT_NAME) -> None:
        self._parsed = parsed
        self._agent = agent

    def allowed(self, url: str) -> bool:
        """Whether `url` (absolute) may be fetched (RFC 9309 section 2.2.2)."""
        return bool(self._parsed.can_fetch(url, self._agent))

    def crawl_delay(self) -> float | None:
        """Seconds to wait between two requests to the host (``Crawl-delay``), or None."""
        delay = self._parsed.crawl_delay(self._agent)
        return float(delay) if delay is not None and delay >= 0 else None

    def sitemaps(self) -> Sequence[str]:
        """The ``Sitemap:`` URLs the file lists, in order."""
        return list(self._parsed.sitemaps)


class ProtegoRobotsParser:
    """Parses robots.txt bodies for one product token (`AGENT_NAME` by default).

    Args:
        agent: the product token our groups are found by.
    """

    def __init__(self, agent: str = AGENT_NAME) -> None:
        self.agent = agent

    def parse(self, body: bytes) -> ProtegoRules:
        """The rules in a robots.txt body (UTF-8, RFC 9309 section 2.3; undecodable bytes are
        replaced, lines that cannot be parsed are ignored as section 2.2 says)."""
        text = body.decode("utf-8", errors="replace").lstrip("\ufeff")
        return ProtegoRules(Protego.parse(text), self.agent)
