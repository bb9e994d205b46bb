"""The headless browsers the browser tests drive: Debian's Chromium and Firefox ESR, nothing downloaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_testkit.firefox_relay import launcher

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FIREFOX = Path("/usr/bin/firefox-esr")


@dataclass(frozen=True)
class SystemBrowser:
    """A browser from a Debian package, and the options Playwright launches it with (no browser download)."""

    name: str  # Playwright's browser type
    executable: Path
    package: str  # what `apt-get install` needs
    options: dict[str, Any] = field(default_factory=dict)
    relayed: bool = False  # launched through fusion_testkit.firefox_relay

    def missing(self) -> str | None:
        """Why this browser cannot be launched here (None: it can)."""
        if self.executable.is_file():
            return None
        return f"no {self.name} at {self.executable} (apt-get install -y {self.package})"

    def launch_options(self, workdir: Path) -> dict[str, Any]:
        """Keyword arguments for `playwright.<name>.launch` (a relayed browser's launcher in `workdir`)."""
        executable = launcher(workdir, self.executable) if self.relayed else self.executable
        return {"executable_path": str(executable), "headless": True, **self.options}


CHROMIUM_BROWSER = SystemBrowser("chromium", CHROMIUM, "chromium", {"args": CHROMIUM_ARGS})
# Playwright drives a stock Firefox over WebDriver BiDi, which Firefox speaks natively, when the channel
# starts with "moz-" (its default Firefox is a patched build, a download this closed network refuses); the
# relay stands in for the one command Firefox ESR lacks.
FIREFOX_BROWSER = SystemBrowser("firefox", FIREFOX, "firefox-esr", {"channel": "moz-firefox"}, relayed=True)
