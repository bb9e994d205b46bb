"""Tests for fusion_testkit.browser: which Debian browser the browser tests can launch."""

from __future__ import annotations

from pathlib import Path

from fusion_testkit.browser import SystemBrowser, major_version


def fake_browser(directory: Path, printed: str) -> Path:
    """An executable that answers `--version` as a browser would."""
    executable = directory / "browser"
    executable.write_text(f"#!/bin/sh\necho '{printed}'\n")
    executable.chmod(0o755)
    return executable


def test_the_major_version_is_read_from_what_the_browser_prints(tmp_path: Path) -> None:
    assert major_version(fake_browser(tmp_path, "Mozilla Firefox 140.12.0esr")) == 140
    assert major_version(fake_browser(tmp_path, "Chromium 143.0.7499.169 built on Debian")) == 143
    assert major_version(fake_browser(tmp_path, "no version here")) is None


def test_a_browser_older_than_its_minimum_is_missing_with_the_reason(tmp_path: Path) -> None:
    old = SystemBrowser("firefox", fake_browser(tmp_path, "Mozilla Firefox 140.12.0esr"), "firefox-esr",
                        min_version=153, too_old="it lacks what the tests need")  # fmt: skip
    found = old.missing()
    assert found is not None and "version 140, older than 153: it lacks what the tests need" in found


def test_a_browser_that_prints_no_version_is_missing_with_the_reason(tmp_path: Path) -> None:
    executable = fake_browser(tmp_path, "no version here")
    silent = SystemBrowser("firefox", executable, "firefox-esr", min_version=153)
    assert silent.missing() == f"{executable} --version prints no version; firefox needs 153+"


def test_a_browser_at_its_minimum_or_without_one_can_be_launched(tmp_path: Path) -> None:
    executable = fake_browser(tmp_path, "Mozilla Firefox 153.0esr")
    assert SystemBrowser("firefox", executable, "firefox-esr", min_version=153).missing() is None
    assert SystemBrowser("chromium", executable, "chromium").missing() is None


def test_an_absent_browser_names_the_package_to_install(tmp_path: Path) -> None:
    found = SystemBrowser("firefox", tmp_path / "nowhere", "firefox-esr").missing()
    assert found == f"no firefox at {tmp_path / 'nowhere'} (apt-get install -y firefox-esr)"
