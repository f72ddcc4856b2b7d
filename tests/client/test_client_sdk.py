"""The SDK against httpx.MockTransport: signing, content types, URLs, errors, configuration."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import wire
from client.config import ClientConfig
from client.errors import APIError, ClientError, ConfigError
from client.sdk import Client, mount_config, signed_headers

# docs/backendai-api.md §3.4
VECTOR_CONFIG = ClientConfig(
    "http://127.0.0.1:8081", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)
VECTOR_DATE = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
WS_PATH = "/stream/session/c1a2b3c4-0000-4000-8000-000000000001/execute"


def fixed_clock() -> datetime:
    return VECTOR_DATE


Handler = Callable[[httpx.Request], httpx.Response]


def recording_client(
    seen: list[httpx.Request],
    answer: httpx.Response | None = None,
    config: ClientConfig = VECTOR_CONFIG,
) -> Client:
    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return answer if answer is not None else httpx.Response(200, json={"items": []})

    return Client(config, transport=httpx.MockTransport(handle), clock=fixed_clock)


def verify_signature(request: httpx.Request, config: ClientConfig = VECTOR_CONFIG) -> None:
    """What the control plane checks (§3.2): raw target, Host, Content-Type minus parameters."""
    auth = wire.parse_authorization(request.headers["Authorization"])
    content_type = request.headers.get("Content-Type", "application/octet-stream")
    expected = wire.sign(
        method=request.method,
        rel_url=request.url.raw_path.decode(),
        date=request.headers["Date"],
        host=request.headers["Host"],
        content_type=content_type.split(";")[0].strip(),
        version=request.headers["X-BackendAI-Version"],
        secret_key=config.secret_key,
    )
    assert auth.access_key == config.access_key
    assert auth.signature == expected


@pytest.mark.trio
async def test_post_session_reproduces_the_signature_test_vector() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(201, json={"sessionId": "x", "sessionName": "n", "status": "RUNNING"})
    async with recording_client(seen, answer) as api:
        await api.create_session("python", name="pysdk-392cd91cfc")
    (request,) = seen
    assert request.method == "POST"
    assert request.url.raw_path == b"/session"
    assert request.headers["Date"] == "2024-01-02T03:04:05.123456+00:00"
    assert request.headers["X-BackendAI-Version"] == "v7.20230615"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == (
        "BackendAI signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE:"
        "5e7964628c73b2ac70c75adecb2ab7a6552771d38a26cb09287be78f700944f8"
    )


@pytest.mark.parametrize(
    ("method", "rel_url", "content_type", "signature"),
    [
        (
            "GET",
            "/",
            "text/plain",
            "4abb452d5d9b4903271df422a4903f6797de6c084c2db91a40f2362cc80677d5",
        ),
        (
            "GET",
            WS_PATH,
            "application/octet-stream",
            "5504d73a8f5fa97809a0cbd975af21e2210f40ec569aa1f0f4c26cf68f7f0665",
        ),
        (
            "GET",
            "/events/session?sessionName=mysess&scope=*",
            "application/octet-stream",
            "51c356177aa1518c7a8b7c21180d5023b286bbd0046e235a1c59447efe820fcf",
        ),
    ],
)
def test_signed_headers_reproduce_the_other_vectors(
    method: str, rel_url: str, content_type: str, signature: str
) -> None:
    headers = signed_headers(VECTOR_CONFIG, method, rel_url, content_type, VECTOR_DATE)
    assert headers["Authorization"].endswith(f":{signature}")


@pytest.mark.trio
async def test_bodiless_requests_send_and_sign_text_plain() -> None:
    seen: list[httpx.Request] = []
    async with recording_client(seen) as api:
        await api.list_sessions()
        await api.destroy_session("mysess", forced=True)
    for request in seen:
        assert request.headers["Content-Type"] == "text/plain"
        assert request.content == b""
        verify_signature(request)
    assert [r.url.raw_path for r in seen] == [b"/session?all=false", b"/session/mysess?forced=true"]


@pytest.mark.trio
async def test_upload_is_multipart_signed_without_the_boundary(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.py").write_text("print(1)\n")
    (tmp_path / "sub" / "a.py").write_bytes(b"\x00\x01")
    seen: list[httpx.Request] = []
    async with recording_client(seen, httpx.Response(204)) as api:
        await api.upload("mysess", [tmp_path / "x.py", tmp_path / "sub" / "a.py"], tmp_path)
    (request,) = seen
    assert request.url.raw_path == b"/session/mysess/upload"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    verify_signature(request)
    body = request.content
    assert body.count(b'Content-Disposition: form-data; name="src"; filename=') == 2
    assert b'filename="x.py"' in body and b'filename="sub/a.py"' in body
    assert body.count(b"Content-Type: application/octet-stream") == 2


@pytest.mark.trio
async def test_upload_refuses_files_outside_basedir(tmp_path: Path) -> None:
    async with recording_client([]) as api:
        with pytest.raises(ClientError, match="cannot upload"):
            await api.upload("s", [Path("/etc/hostname")], tmp_path)


@pytest.mark.trio
async def test_create_session_sends_the_backendai_body_shape() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(201, json={"sessionId": "x", "sessionName": "n", "status": "RUNNING"})
    async with recording_client(seen, answer) as api:
        await api.create_session(
            "python",
            name="s1",
            resources={"cpu": "1", "mem": "128m"},
            environ={"A": "b"},
            max_wait=5,
        )
    body = json.loads(seen[0].content)
    assert body["config"] == {
        "mounts": [],
        "environ": {"A": "b"},
        "resources": {"cpu": "1", "mem": "128m"},
        "resource_opts": {},
        "scalingGroup": None,
        "mount_map": {},
        "preopen_ports": [],
    }
    expected = {
        "tag": None,
        "name": "s1",
        "clusterSize": 1,
        "clusterMode": "single-node",
        "domain": "default",
        "group": "default",
        "type": "interactive",
        "enqueueOnly": False,
        "maxWaitSeconds": 5,
        "reuseIfExists": False,
        "startupCommand": None,
        "image": "python",
    }
    assert {k: body[k] for k in expected} == expected
    assert isinstance(body["architecture"], str) and body["architecture"]


@pytest.mark.trio
async def test_endpoint_path_prefix_and_refs_are_part_of_the_signed_target() -> None:
    config = ClientConfig("http://LocalHost:8081/api/", "AK", "SK")
    seen: list[httpx.Request] = []
    async with recording_client(seen, httpx.Response(200, json={}), config) as api:
        await api.get_session("a/b c")
    (request,) = seen
    assert request.url.raw_path == b"/api/session/a%2Fb%20c"
    assert request.headers["Host"] == "localhost:8081"
    verify_signature(request, config)


@pytest.mark.trio
async def test_health_is_not_signed() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(200, json={"status": "ok", "nodesAlive": 1})
    async with recording_client(seen, answer) as api:
        assert await api.health() == {"status": "ok", "nodesAlive": 1}
    assert "Authorization" not in seen[0].headers


@pytest.mark.trio
async def test_problem_json_becomes_an_api_error_with_a_one_line_message() -> None:
    problem = {
        "type": "https://api.backend.ai/probs/object-not-found",
        "title": "No such session.",
        "msg": "Session (id=x) does not exist.",
    }
    answer = httpx.Response(
        404, content=json.dumps(problem), headers={"Content-Type": "application/problem+json"}
    )
    async with recording_client([], answer) as api:
        with pytest.raises(APIError) as caught:
            await api.get_session("x")
    err = caught.value
    assert (err.status, err.slug, err.title, err.msg) == (
        404,
        "object-not-found",
        "No such session.",
        "Session (id=x) does not exist.",
    )
    assert str(err) == "No such session. (404): Session (id=x) does not exist."


def test_api_error_names_invalid_fields_and_survives_non_json_bodies() -> None:
    body = json.dumps(
        {
            "type": "https://api.backend.ai/probs/invalid-api-params",
            "title": "Missing or invalid API parameters.",
            "msg": "Input validation error",
            "data": {"config.resources": "mem must be at least 64m"},
        }
    ).encode()
    err = APIError.from_response(400, "Bad Request", body)
    assert str(err) == (
        "Missing or invalid API parameters. (400): Input validation error"
        " [config.resources: mem must be at least 64m]"
    )
    gateway = APIError.from_response(502, "Bad Gateway", b"<html>\n upstream down </html>")
    assert gateway.slug == "generic-error"
    assert str(gateway) == "Bad Gateway (502): <html> upstream down </html>"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.trio
async def test_an_unreachable_control_plane_is_one_clear_error() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    async with Client(ClientConfig(endpoint, "AK", "SK")) as api:
        with pytest.raises(ClientError) as caught:
            await api.list_sessions()
    assert str(caught.value).startswith(f"cannot reach the control plane at {endpoint}: ")
    assert "refused" in str(caught.value).lower()


def test_config_prefers_shipyard_variables_and_falls_back_to_backend_ones() -> None:
    env = {
        "BACKEND_ENDPOINT": "http://b:1",
        "BACKEND_ACCESS_KEY": "bak",
        "BACKEND_SECRET_KEY": "bsk",
        "SHIPYARD_ACCESS_KEY": "sak",
    }
    assert ClientConfig.from_env(env) == ClientConfig("http://b:1", "sak", "bsk")
    env["SHIPYARD_ENDPOINT"] = "https://s:2/prefix"
    assert ClientConfig.from_env(env).endpoint == "https://s:2/prefix"


def test_missing_config_says_to_source_client_env() -> None:
    with pytest.raises(ConfigError) as caught:
        ClientConfig.from_env({"XDG_DATA_HOME": "/data", "SHIPYARD_ENDPOINT": "http://x:1"})
    message = str(caught.value)
    assert "SHIPYARD_ACCESS_KEY, SHIPYARD_SECRET_KEY not set" in message
    assert message.endswith(". /data/shipyard/client.env")


def test_an_endpoint_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        ClientConfig("127.0.0.1:8081", "a", "b")


def test_mount_specs_become_mounts_mount_map_and_read_only_options() -> None:
    names, paths, options = mount_config(["data", "ref:refs/v1:ro", "w:/mnt/w", "logs:rw"])
    assert names == ["data", "ref", "w", "logs"]
    assert paths == {"ref": "refs/v1", "w": "/mnt/w"}
    assert options == {"ref": {"permission": "ro"}}
    for bad in ["", ":x", "a::", "a:b:c:d"]:
        with pytest.raises(ClientError, match="NAME"):
            mount_config([bad])
