"""fusion_testkit.firefox_relay: BiDi messages pass unchanged but "unknown command" to a stood-in one."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from fusion_testkit.firefox_relay import answer, relay, url_of

MEDIA = "emulation.setMediaFeaturesOverride"


def unknown(message_id: int) -> str:
    return json.dumps({"type": "error", "id": message_id, "error": "unknown command", "message": MEDIA})


def test_unknown_command_to_a_stood_in_command_becomes_a_success() -> None:
    stood_in: dict[int, dict[str, object]] = {7: {}}
    assert json.loads(answer(unknown(7), stood_in)) == {"type": "success", "id": 7, "result": {}}
    assert stood_in == {}


def test_other_answers_pass_unchanged() -> None:
    other_error = json.dumps({"type": "error", "id": 7, "error": "invalid argument", "message": "x"})
    assert answer(other_error, {7: {}}) == other_error
    assert answer(unknown(8), {7: {}}) == unknown(8)  # not a command the relay stands in for
    assert answer(unknown(7), {}) == unknown(7)


@pytest.fixture
def fake_firefox() -> Iterator[str]:
    """A WebSocket server that, like Firefox 153 ESR, knows every command but the colour-scheme override."""

    def handle(connection: ServerConnection) -> None:
        for message in connection:
            command = json.loads(message)
            if command["method"] == MEDIA:
                connection.send(unknown(command["id"]))
            else:
                path = connection.request.path if connection.request else ""
                connection.send(
                    json.dumps({"type": "success", "id": command["id"], "result": {"path": path}})
                )

    server: Server = serve(handle, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    server.shutdown()
    thread.join(timeout=5)


def test_the_relay_passes_commands_to_the_browser_and_stands_in_for_the_missing_one(
    fake_firefox: str,
) -> None:
    server = relay(fake_firefox)
    try:
        with connect(url_of(server) + "/session", open_timeout=5) as client:
            client.send(json.dumps({"id": 1, "method": "session.new", "params": {"capabilities": {}}}))
            passed = json.loads(client.recv(timeout=5))
            client.send(json.dumps({"id": 2, "method": MEDIA, "params": {"features": {}}}))
            stood_in = json.loads(client.recv(timeout=5))
    finally:
        server.shutdown()
    assert passed == {"type": "success", "id": 1, "result": {"path": "/session"}}
    assert stood_in == {"type": "success", "id": 2, "result": {}}
