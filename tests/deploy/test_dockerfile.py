"""The Dockerfile: hadolint finds nothing, the runtime stage has the shape we promise
(non-root, `inferwatch` entrypoint, `serve` by default, a health check), and the build
context that .dockerignore lets through is enough to build the package with its SQL files
and console script.

No image is built: no Docker engine runs here and no base image can be pulled."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.common import ROOT, require_tool

DOCKERFILE = ROOT / "Dockerfile"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    found, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


@pytest.fixture(scope="module")
def runtime() -> list[tuple[str, str]]:
    """The instructions of the last stage, the one that becomes the image."""
    instructions = _instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run([require_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    done = subprocess.run([require_tool("hadolint"), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_the_image_is_python_311_slim_and_runs_as_a_fixed_non_root_user(
    runtime: list[tuple[str, str]],
) -> None:
    args = dict(_instructions(DOCKERFILE.read_text()))
    base = args["ARG"].split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base)
    assert runtime[0][1].startswith("${PYTHON_IMAGE}")
    users = [rest for kw, rest in runtime if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert users[-1].split(":")[0].isdigit()


def test_the_entrypoint_is_inferwatch_and_serve_is_the_default(runtime: list[tuple[str, str]]) -> None:
    entrypoint = [json.loads(rest) for kw, rest in runtime if kw == "ENTRYPOINT"]
    command = [json.loads(rest) for kw, rest in runtime if kw == "CMD"]
    assert entrypoint[-1] == ["inferwatch"]
    assert command[-1] == ["serve", "--host", "0.0.0.0"]
    ordered = [kw for kw, _ in runtime]
    assert ordered.index("USER") < ordered.index("ENTRYPOINT")


def test_the_health_check_asks_the_server_healthz(runtime: list[tuple[str, str]]) -> None:
    checks = [rest for kw, rest in runtime if kw == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0] and "INFERWATCH_PORT" in checks[0] and "'8000'" in checks[0]
    assert "8000" in next(rest for kw, rest in runtime if kw == "EXPOSE").split()


# --- the build context -----------------------------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: `*` within one path element, `**` across."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


def _context_files() -> list[str]:
    """Files of the checkout that docker build would send, per .dockerignore (the last
    matching rule wins; a rule matching a parent directory matches what is inside)."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern(line.lstrip("!").strip("/"))))
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    kept = []
    for path in listed:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        included = True
        for negate, pattern in rules:
            if any(pattern.fullmatch(p) for p in prefixes):
                included = negate
        if included and (ROOT / path).is_file():
            kept.append(path)
    return kept


def test_dockerignore_sends_the_package_and_nothing_else() -> None:
    files = _context_files()
    tops = {f.split("/")[0] for f in files}
    assert {"pyproject.toml", "README.md", "api", "migrations"} <= tops
    assert not tops & {"tests", ".git", ".venv", "deploy", "docs", "bench", "docker-compose.yml"}
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_the_build_context_builds_the_package_with_its_sql_and_console_script(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for path in _context_files():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, context / path)
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = wheels.glob("inferwatch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "inferwatch = api.cli:main" in archive.read(entry_points).decode()
    shipped_sql = {n for n in names if n.startswith("migrations/clickhouse/") and n.endswith(".sql")}
    expected_sql = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "migrations" / "clickhouse").glob("*.sql")
    }
    assert expected_sql and shipped_sql == expected_sql
    assert {"api/cli.py", "collector/cli.py"} <= names
