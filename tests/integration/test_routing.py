"""Routing: by Host, then by the longest path prefix; everything else is refused unforwarded."""

import pytest

import rawhttp
from harness import assert_never_forwarded, path_route, route


class Site:
    """gatehouse with several routes, each served by its own named backend."""

    def __init__(self, gatehouse, backends):
        self.gatehouse = gatehouse
        self.backends = backends
        self.port = gatehouse.http_port

    def backend_of(self, response):
        assert response.status == 200, response
        return response.json()["backend"]


@pytest.fixture
def site(start_gatehouse, backend_factory):
    backends = {name: backend_factory(name) for name in ("api", "web", "deep", "wild", "exact")}
    routes = [
        route("app.test", paths=[
            path_route("/api/", backends["api"], strip_prefix=True),
            path_route("/docs/deep/", backends["deep"]),
            path_route("/", backends["web"]),
        ]),
        route("*.wild.test", backends["wild"]),
        route("exact.wild.test", backends["exact"]),
        route("only.test", paths=[path_route("/only/", backends["web"])]),
    ]
    return Site(start_gatehouse(routes), backends)


def test_a_request_is_routed_by_its_host(site):
    response = rawhttp.get(site.port, "/page")
    assert site.backend_of(response) == "web"


def test_the_host_port_and_letter_case_are_ignored_when_routing(site):
    response = rawhttp.get(site.port, "/page", host="APP.Test:8080")
    assert site.backend_of(response) == "web"


def test_a_wildcard_host_matches_one_label(site):
    response = rawhttp.get(site.port, "/", host="a.wild.test")
    assert site.backend_of(response) == "wild"


@pytest.mark.parametrize("host", ["a.b.wild.test", "wild.test"], ids=["two labels", "no label"])
def test_a_wildcard_host_matches_neither_two_labels_nor_the_bare_domain(site, host):
    response = rawhttp.get(site.port, "/", host=host)
    assert response.status == 404
    assert_never_forwarded(*site.backends.values())


def test_an_exact_host_wins_over_a_matching_wildcard(site):
    response = rawhttp.get(site.port, "/", host="exact.wild.test")
    assert site.backend_of(response) == "exact"


def test_an_unknown_host_gets_404_and_is_never_forwarded(site):
    response = rawhttp.get(site.port, "/", host="unknown.test")
    assert response.status == 404
    assert_never_forwarded(*site.backends.values())


def test_the_longest_matching_path_prefix_wins(site):
    assert site.backend_of(rawhttp.get(site.port, "/docs/deep/page")) == "deep"
    assert site.backend_of(rawhttp.get(site.port, "/docs/shallow")) == "web"


def test_strip_prefix_removes_the_prefix_but_keeps_the_leading_slash_and_query(site):
    response = rawhttp.get(site.port, "/api/users?q=1")
    assert site.backend_of(response) == "api"
    assert response.json()["target"] == "/users?q=1"


def test_strip_prefix_of_the_whole_path_forwards_a_single_slash(site):
    response = rawhttp.get(site.port, "/api/")
    assert response.json()["target"] == "/"


def test_a_path_without_strip_prefix_is_forwarded_unchanged(site):
    response = rawhttp.get(site.port, "/docs/deep/page?x=%41")
    assert response.json()["target"] == "/docs/deep/page?x=%41"


def test_a_host_that_matches_with_no_matching_prefix_gets_404_and_is_never_forwarded(site):
    response = rawhttp.get(site.port, "/elsewhere", host="only.test")
    assert response.status == 404
    assert_never_forwarded(*site.backends.values())


def test_an_http11_request_without_host_gets_400_and_is_never_forwarded(site):
    response = rawhttp.get(site.port, "/", host=None)
    assert response.status == 400
    assert_never_forwarded(*site.backends.values())


def test_an_absolute_form_target_is_routed_by_its_authority_and_forwarded_in_origin_form(site):
    response = rawhttp.get(site.port, "http://app.test/api/x?y=2", host="app.test")
    assert site.backend_of(response) == "api"
    assert response.json()["target"] == "/x?y=2"


def test_an_absolute_form_target_wins_over_a_different_host_header(site):
    response = rawhttp.get(site.port, "http://a.wild.test/z", host="app.test")
    assert site.backend_of(response) == "wild"


def test_an_absolute_form_target_for_a_name_not_served_gets_404_and_is_never_forwarded(site):
    # A proxy that fetched this would be an open proxy.
    response = rawhttp.get(site.port, "http://example.com/", host="app.test")
    assert response.status == 404
    assert_never_forwarded(*site.backends.values())


def test_connect_gets_405_and_is_never_forwarded(site):
    response, _ = rawhttp.send_raw(
        site.port, b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n")
    assert response is not None and response.status == 405
    assert_never_forwarded(*site.backends.values())


@pytest.mark.parametrize("target", [
    "/a/../b", "/./x", "/a/./b", "/a/..", "/a/%2e%2e/b", "/a/%2E%2E/b", "/a/.%2e/b", "/%2e/x",
])
def test_a_path_with_dot_segments_gets_400_and_is_never_forwarded(site, target):
    response = rawhttp.get(site.port, target)
    assert response.status == 400
    assert_never_forwarded(*site.backends.values())


def test_the_route_table_reaches_the_backend_for_a_plain_request(site):
    # The control for every "never forwarded" case above: the same site does forward.
    rawhttp.get(site.port, "/page")
    assert [r.target for r in site.backends["web"].requests] == ["/page"]

