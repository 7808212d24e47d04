"""URL normalisation, the de-duplication key and the crawl's scope (services/crawl_scope.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.crawl_scope import CrawlScope, is_tracking_parameter, normalize_url, url_key


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTP://Example.COM", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com/a#section", "http://example.com/a"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/docs/", "http://example.com/docs/"),  # fetched as written
        ("http://example.com/%7euser/%e2%82%ac", "http://example.com/~user/%E2%82%AC"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://user:secret@example.com/", "http://example.com/"),
        ("http://example.com/?b=2&a=1", "http://example.com/?a=1&b=2"),
        ("http://example.com/?utm_source=x&utm_medium=y&id=7&gclid=1&fbclid=2&msclkid=3", "http://example.com/?id=7"),
        ("http://example.com/?UTM_Campaign=x", "http://example.com/"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://example.com./a", "http://example.com/a"),
    ],
)
def test_normalize_url(url, normal):
    assert normalize_url(url) == normal
    assert normalize_url(normal) == normal  # idempotent


@pytest.mark.parametrize(
    "url", ["mailto:a@example.com", "javascript:void(0)", "ftp://example.com/", "http:///x", "", "tel:+1"]
)
def test_what_is_not_a_web_url_is_none(url):
    assert normalize_url(url) is None


def test_relative_urls_resolve_against_the_page():
    base = "https://example.com/docs/intro"
    assert normalize_url("setup", base) == "https://example.com/docs/setup"
    assert normalize_url("../blog/", base) == "https://example.com/blog/"
    assert normalize_url("//cdn.example.com/x", base) == "https://cdn.example.com/x"
    assert normalize_url("?page=2", base) == "https://example.com/docs/intro?page=2"


def test_one_key_for_one_page():
    same = [
        "http://www.example.com/docs/",
        "https://example.com/docs",
        "https://EXAMPLE.com:443/docs?utm_source=newsletter#top",
        "http://example.com/docs/./",
    ]
    assert len({url_key(normalize_url(url)) for url in same}) == 1
    assert url_key(normalize_url("https://example.com/docs?page=2")) != url_key(
        normalize_url("https://example.com/docs")
    )
    assert url_key(normalize_url("https://example.com:8080/docs")) != url_key(normalize_url("https://example.com/docs"))


def test_tracking_parameters():
    assert is_tracking_parameter("utm_content") and is_tracking_parameter("gclid") and is_tracking_parameter("_ga")
    assert not is_tracking_parameter("page") and not is_tracking_parameter("q")


def test_same_site_treats_www_alike_and_subdomains_only_when_asked():
    scope = CrawlScope("https://www.example.com/")
    assert scope.same_site("https://example.com/a")
    assert scope.same_site("http://www.example.com/a")
    assert not scope.same_site("https://docs.example.com/a")
    assert not scope.same_site("https://example.org/a")
    assert not scope.same_site("https://notexample.com/a")
    assert not scope.same_site("https://example.com:8443/a")
    wide = CrawlScope("https://example.com/", include_subdomains=True)
    assert wide.same_site("https://docs.example.com/a") and wide.same_site("https://a.b.example.com/")
    assert not wide.same_site("https://example.com.evil.test/")


def test_include_and_exclude_globs_match_the_path():
    scope = CrawlScope("https://example.com/", include_paths=("/docs/*", "*.pdf"), exclude_paths=("/docs/internal/*",))
    assert scope.path_allowed("https://example.com/")  # the start URL always
    assert scope.path_allowed("https://example.com/docs/setup")
    assert scope.path_allowed("https://example.com/docs/a/b/c")  # * crosses "/"
    assert scope.path_allowed("https://example.com/files/manual.pdf")
    assert not scope.path_allowed("https://example.com/docs")  # "/docs/*" needs the slash
    assert not scope.path_allowed("https://example.com/blog/post")
    assert not scope.path_allowed("https://example.com/docs/internal/secret")  # exclusion wins
    assert CrawlScope("https://example.com/").path_allowed("https://example.com/anything")


def test_depth():
    scope = CrawlScope("https://example.com/", max_depth=2)
    assert scope.depth_allowed(0) and scope.depth_allowed(2) and not scope.depth_allowed(3)


_segment = st.text(alphabet=st.sampled_from("abcXYZ019-._~%/?&=#+ é:@!$'()*,;"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "HTTPS", "https"]),
    host=st.sampled_from(["example.com", "WWW.Example.com", "127.0.0.1", "[::1]", "bücher.example", "a.b.example."]),
    port=st.sampled_from(["", ":80", ":443", ":8080"]),
    path=_segment,
    query=_segment,
)
def test_normalisation_is_idempotent_and_keys_are_stable(scheme, host, port, path, query):
    url = f"{scheme}://{host}{port}/{path}?{query}"
    normal = normalize_url(url)
    if normal is None:
        return
    assert normalize_url(normal) == normal
    assert url_key(normalize_url(normal)) == url_key(normal)
    assert "#" not in normal
