"""The health path on every listener, and the admin endpoints."""

import json

import rawhttp
from harness import RefusingPort, assert_never_forwarded, route


def test_the_health_path_answers_200_for_a_host_without_a_route(gatehouse):
    response = rawhttp.get(gatehouse.http_port, "/healthz", host="no-route.test")
    assert response.status == 200


def test_the_health_path_is_answered_by_gatehouse_itself_and_never_forwarded(gatehouse, backend):
    response = rawhttp.get(gatehouse.http_port, "/healthz", host="app.test")
    assert response.status == 200
    assert_never_forwarded(backend)


def test_the_health_path_answers_200_when_every_upstream_is_down(start_gatehouse):
    refusing = RefusingPort()
    try:
        gatehouse = start_gatehouse([route("app.test", refusing)])
        assert rawhttp.get(gatehouse.http_port, "/echo").status == 502
        assert rawhttp.get(gatehouse.http_port, "/healthz").status == 200
    finally:
        refusing.release()


def test_the_health_path_answers_200_on_the_admin_listener(gatehouse):
    assert rawhttp.get(gatehouse.admin_port, "/healthz", host="127.0.0.1").status == 200


def test_readyz_answers_200_while_serving(gatehouse):
    assert rawhttp.get(gatehouse.admin_port, "/readyz", host="127.0.0.1").status == 200


def test_status_is_json_with_version_readiness_and_routes(gatehouse):
    response = rawhttp.get(gatehouse.admin_port, "/status", host="127.0.0.1")
    assert response.status == 200
    assert response.header("Content-Type").split(";")[0].strip() == "application/json"
    status = json.loads(response.body)
    assert {"version", "ready", "routes"} <= set(status), status
    assert status["ready"] is True


def test_metrics_expose_the_request_counter(gatehouse):
    assert rawhttp.get(gatehouse.http_port, "/echo").status == 200
    response = rawhttp.get(gatehouse.admin_port, "/metrics", host="127.0.0.1")
    assert response.status == 200
    assert "gatehouse_requests_total" in response.body.decode()
