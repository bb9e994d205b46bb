"""Firefox ESR for Playwright: the browser behind a relay on its WebDriver BiDi socket.

Playwright drives a stock Firefox over WebDriver BiDi, but asks every new browser context for
`emulation.setMediaFeaturesOverride` (the colour scheme), a command Debian's Firefox 153 ESR does not
know yet; the context then fails to open. Run as `python firefox_relay.py FIREFOX ARGS...` (Playwright's
`executable_path` is a script that does so: `launcher`), this starts FIREFOX with ARGS and, in between
Playwright and the browser, passes every message through unchanged except Firefox's "unknown command"
answer to that one command, which becomes an empty success: the page keeps the browser's own colour scheme.
A Firefox that knows the command answers it itself and the relay changes nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")
# What Firefox may not know yet, and the result that stands for "done" in its place.
MISSING_COMMANDS: dict[str, dict[str, object]] = {"emulation.setMediaFeaturesOverride": {}}


def launcher(directory: Path, firefox: Path) -> Path:
    """Write into `directory` the executable Playwright launches instead of `firefox`: this module."""
    script = directory / "firefox-bidi-relay"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "{firefox}" "$@"\n')
    script.chmod(0o755)
    return script


def answer(message: str, stood_in: dict[int, dict[str, object]]) -> str:
    """Firefox's `message` to Playwright; "unknown command" to a command of `stood_in` becomes a success."""
    if not stood_in:
        return message
    parsed = json.loads(message)
    result = stood_in.pop(parsed.get("id"), None) if isinstance(parsed.get("id"), int) else None
    if result is not None and parsed.get("type") == "error" and parsed.get("error") == "unknown command":
        return json.dumps({"type": "success", "id": parsed["id"], "result": result})
    return message


def relay(upstream_url: str) -> Server:
    """Serve, from a thread, a WebSocket that relays each connection to `upstream_url` (`url_of` it)."""

    def handle(client: ServerConnection) -> None:
        stood_in: dict[int, dict[str, object]] = {}
        with connect(
            upstream_url + (client.request.path if client.request else ""), max_size=None
        ) as browser:

            def to_client() -> None:
                for message in browser:
                    client.send(answer(str(message), stood_in))
                client.close()

            threading.Thread(target=to_client, daemon=True).start()
            for message in client:
                parsed = json.loads(message)
                if parsed.get("method") in MISSING_COMMANDS:
                    stood_in[parsed["id"]] = MISSING_COMMANDS[parsed["method"]]
                browser.send(message)

    server = serve(handle, "127.0.0.1", 0, max_size=None, compression=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url_of(server: Server) -> str:
    """The ws:// address a server started by `relay` listens on."""
    return f"ws://127.0.0.1:{server.socket.getsockname()[1]}"


def main(argv: list[str]) -> int:
    """Run Firefox (`argv`: its path, then its arguments) and print the relay's address as its own."""
    browser = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert browser.stderr is not None
    for line in browser.stderr:
        found = LISTENING.search(line)
        if found:
            line = line.replace(found.group(1), url_of(relay(found.group(1))))
        sys.stderr.write(line)
        sys.stderr.flush()
    return browser.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
