"""docker-compose.yml and its env file: accepted by a Compose CLI and by the Compose
specification's JSON schema, and the services fit together (ports, tokens, passwords, the
flags and variables the server and the collector actually read).

No Docker engine runs here, so nothing is started: `config` validates without one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from api.cli import build_parser
from api.settings import Settings
from collector.cli import parse_config
from tests.deploy.common import (
    AWAITING,
    ROOT,
    collector_env_names,
    read_env_file,
    require_tool,
    server_env_names,
    unknown_inferwatch_names,
)

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def _flags(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)


# --- the checkers ----------------------------------------------------------------------------------


def _compose_cli() -> list[str]:
    """`docker compose` where the plugin is installed, else `docker-compose` (Debian's package)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return [require_tool("docker-compose")]


def _config(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *_compose_cli(),
            "--project-directory",
            str(project),
            "-f",
            str(project / COMPOSE.name),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # The caller's environment minus what would change the result (an INFERWATCH_ENV_FILE
        # pointing elsewhere, COMPOSE_FILE and friends).
        env={k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "INFERWATCH_"))},
    )


def _project_copy(tmp_path: Path, text: str) -> Path:
    (tmp_path / "deploy").mkdir()
    shutil.copy(ENV_EXAMPLE, tmp_path / "deploy" / ENV_EXAMPLE.name)
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    (tmp_path / COMPOSE.name).write_text(text)
    return tmp_path


def test_compose_cli_accepts_the_file(tmp_path: Path) -> None:
    done = _config(_project_copy(tmp_path, COMPOSE.read_text()))
    assert done.returncode == 0, done.stderr


def test_compose_cli_rejects_a_broken_file(tmp_path: Path) -> None:
    # The same file with a misspelt depends_on condition: the checker must notice.
    broken = COMPOSE.read_text().replace("condition: service_healthy", "condition: service_healty", 1)
    done = _config(_project_copy(tmp_path, broken))
    assert done.returncode != 0


def _compose_schema() -> dict:
    files = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(files.joinpath("compose-spec.json").read_text())


def test_compose_file_matches_the_compose_specification(compose: dict) -> None:
    validator = jsonschema.Draft7Validator(_compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors


def test_the_specification_check_catches_an_unknown_key(compose: dict) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["inferwatch"]["healthcheck"]["intervall"] = "5s"
    assert list(jsonschema.Draft7Validator(_compose_schema()).iter_errors(broken))


# --- the services fit together ---------------------------------------------------------------------


def test_every_image_is_pinned_to_a_version(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert image, f"{name} has no image"
        if "build" in service:
            continue
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert re.search(r"\d", tag) and tag != "latest", f"{name}: {image} is not pinned"


def test_every_service_has_a_healthcheck_and_waits_on_conditions(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services
            assert rule["condition"] in {
                "service_healthy",
                "service_started",
                "service_completed_successfully",
            }
    server_needs = services["inferwatch"]["depends_on"]
    assert all(
        server_needs[s]["condition"] == "service_healthy" for s in ("clickhouse", "postgres", "mailpit")
    )


def test_state_lives_in_declared_named_volumes(compose: dict) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source in declared, f"{mount} is not a named volume"
            used.add(source)
    assert used == declared
    mounts = {s: svc.get("volumes", []) for s, svc in compose["services"].items()}
    assert "clickhouse-data:/var/lib/clickhouse" in mounts["clickhouse"]
    assert "postgres-data:/var/lib/postgresql/data" in mounts["postgres"]


def test_vllm_and_the_collector_reserve_the_gpus(compose: dict) -> None:
    for name in ("vllm", "collector"):
        devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name


def test_vllm_sends_its_spans_to_the_collector_beside_it(compose: dict) -> None:
    vllm, collector = compose["services"]["vllm"], compose["services"]["collector"]
    assert collector["network_mode"] == "service:vllm"
    assert vllm["environment"]["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    endpoint = urlsplit(_flags(vllm["command"])["otlp-traces-endpoint"])
    collector_flags = _flags(collector["command"])
    # vLLM's HTTP exporter posts to the URL as given: the path must be the OTLP traces path.
    assert endpoint.path == "/v1/traces"
    assert endpoint.hostname == "127.0.0.1" and endpoint.port == int(collector_flags["otlp-port"])
    engine = urlsplit(collector_flags["engine-metrics"])
    assert engine.hostname == "127.0.0.1" and engine.port == int(_flags(vllm["command"])["port"])
    assert engine.path == "/metrics"


def test_the_collector_ships_to_the_server_service(compose: dict) -> None:
    server = urlsplit(_flags(compose["services"]["collector"]["command"])["server"])
    assert server.hostname == "inferwatch"
    assert server.port == int(compose["services"]["inferwatch"]["environment"]["INFERWATCH_PORT"])


def test_the_collector_command_is_one_the_collector_accepts(compose: dict, env: dict[str, str]) -> None:
    collector = compose["services"]["collector"]
    command = collector["command"]
    assert command[0] == "collect"
    environ = {**env, **collector["environment"]}
    environ["INFERWATCH_COLLECTOR_HOST_NAME"] = "node-1"  # compose fills this from the shell
    config, _ = parse_config(command[1:], environ)
    assert config.server == "http://inferwatch:8000"
    assert config.token == env["INFERWATCH_COLLECTOR_TOKEN"]
    assert config.spool_dir == "/var/lib/inferwatch/spool"
    assert (config.otlp_port, config.metrics_port) == (4318, 9401)


def test_the_server_command_and_settings_are_valid(
    compose: dict, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = compose["services"]["inferwatch"]
    args = build_parser().parse_args(server["command"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    for key, value in {**env, **server["environment"]}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.clickhouse_url.startswith("http://") and settings.database_url.startswith(
        "postgresql+psycopg://"
    )
    assert settings.notify.smtp_host == "mailpit" and settings.notify.smtp_port == 1025
    assert settings.notify.smtp_starttls is False


def test_the_env_file_names_only_variables_something_reads(compose: dict, env: dict[str, str]) -> None:
    names = set(env)
    for service in compose["services"].values():
        environment = service.get("environment", {})
        names |= set(environment)
    assert not unknown_inferwatch_names(names)


def test_passwords_and_tokens_in_the_env_file_agree(env: dict[str, str]) -> None:
    clickhouse = urlsplit(env["INFERWATCH_CLICKHOUSE_URL"])
    assert (clickhouse.username, clickhouse.password) == (env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"])
    assert (clickhouse.hostname, clickhouse.port) == ("clickhouse", 8123)
    postgres = urlsplit(env["INFERWATCH_DATABASE_URL"])
    assert (postgres.username, postgres.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert (postgres.hostname, postgres.path) == ("postgres", "/" + env["POSTGRES_DB"])
    tokens = dict(pair.split(":", 1) for pair in env["INFERWATCH_SECURITY__BOOTSTRAP_TOKENS"].split(","))
    assert tokens["ingest"] == env["INFERWATCH_COLLECTOR_TOKEN"]
    assert all(t.startswith("iwt_") and len(t) >= 36 for t in tokens.values())
    assert tokens["ingest"] != tokens["admin"]


def test_the_env_file_is_the_default_and_can_be_replaced(compose: dict) -> None:
    for name in ("clickhouse", "postgres", "inferwatch", "collector"):
        assert compose["services"][name]["env_file"] == ["${INFERWATCH_ENV_FILE:-deploy/compose.env.example}"]
    # vLLM gets no inferwatch secrets.
    assert "env_file" not in compose["services"]["vllm"]


def test_variables_awaited_from_the_server_are_not_read_yet() -> None:
    # When the server starts reading one, drop it from AWAITING so that a typo in it is caught.
    landed = set(AWAITING) & (server_env_names() | collector_env_names())
    assert not landed, f"remove from AWAITING in tests/deploy/common.py: {sorted(landed)}"
