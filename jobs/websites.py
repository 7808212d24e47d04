"""Website crawls (issue 15, "Website sources"): `websites.crawl`, queued when a website is added
to a chatbot or a recrawl is asked for (the API answered 202 with the job).

Retries: a crawl that stopped on an unexpected error is tried again after 1 minute, then 2 (3
attempts); pages the failed attempt recorded are not fetched again (the crawl resumes).
"""

from __future__ import annotations

from typing import Any

from services import websites
from services.jobs import JobKind, JobRun, RetryPolicy


def crawl(run: JobRun) -> dict[str, Any]:
    """Crawl the website the payload names (`services.websites.crawl_website`)."""
    return websites.crawl_website(run)


JOB_KINDS = [
    JobKind(websites.CRAWL_KIND, crawl, RetryPolicy(max_attempts=3, base_delay_seconds=60, max_delay_seconds=600))
]
