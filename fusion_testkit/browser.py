"""The headless browsers the browser tests drive: Debian's Chromium and Firefox ESR, nothing downloaded."""

from __future__ import annotations

import re
import subprocess
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
    # The oldest major version the tests run in, and why an older one cannot (0: any version).
    min_version: int = 0
    too_old: str = ""

    def missing(self) -> str | None:
        """Why this browser cannot be launched here (None: it can)."""
        if not self.executable.is_file():
            return f"no {self.name} at {self.executable} (apt-get install -y {self.package})"
        if self.min_version:
            major = major_version(self.executable)
            if major is None:
                return f"{self.executable} --version prints no version; {self.name} needs {self.min_version}+"
            if major < self.min_version:
                return f"{self.executable} is version {major}, older than {self.min_version}: {self.too_old}"
        return None

    def launch_options(self, workdir: Path) -> dict[str, Any]:
        """Keyword arguments for `playwright.<name>.launch` (a relayed browser's launcher in `workdir`)."""
        executable = launcher(workdir, self.executable) if self.relayed else self.executable
        return {"executable_path": str(executable), "headless": True, **self.options}


def major_version(executable: Path) -> int | None:
    """The major version `executable --version` prints ("Mozilla Firefox 140.12.0esr": 140), or None."""
    try:
        printed = subprocess.run(
            [str(executable), "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"(\d+)\.\d+", printed)
    return int(found.group(1)) if found else None


CHROMIUM_BROWSER = SystemBrowser("chromium", CHROMIUM, "chromium", {"args": CHROMIUM_ARGS})
# Playwright drives a stock Firefox over WebDriver BiDi, which Firefox speaks natively, when the channel
# starts with "moz-" (its default Firefox is a patched build, a download this closed network refuses); the
# relay stands in for the one command Firefox ESR 153 lacks. The tests were written in ESR 153; ESR 140 (what
# Debian bookworm serves in December 2026) lacks more commands, and its page CSP refuses the scripts
# Playwright runs in the page over BiDi ("call to eval() blocked by CSP"), so there they are skipped.
FIREFOX_BROWSER = SystemBrowser(
    "firefox",
    FIREFOX,
    "firefox-esr",
    {"channel": "moz-firefox"},
    relayed=True,
    min_version=153,
    too_old="its CSP refuses Playwright's in-page scripts over WebDriver BiDi; Chromium runs these tests",
)
