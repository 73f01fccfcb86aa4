"""Flags, environment variables and their validation; the docs list every variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from collector.cli import main, parse_config
from collector.config import OPTIONS, CollectorConfig, ConfigError, build_config, parse_duration, parse_size

DOC = Path(__file__).resolve().parents[2] / "docs" / "collector.md"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5), ("1h", 3600.0), (" 250ms ", 0.25)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "fast", "-1s", "1d", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * 2**20),
        ("2GiB", 2 * 2**30),
        ("1000000", 10**6),
        ("1GB", 10**9),
        ("64k", 65536),
        ("1.5MiB", 1_572_864),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {
        "INFERWATCH_COLLECTOR_SERVER": "http://from-env:8000",
        "INFERWATCH_COLLECTOR_CLUSTER": "env-cluster",
        "INFERWATCH_COLLECTOR_INTERVAL": "2s",
        "INFERWATCH_COLLECTOR_TOKEN": "t0ken",
    }
    config, level = parse_config(["--cluster", "flag-cluster", "--spool-max-bytes", "1GiB"], env)
    assert config.server == "http://from-env:8000"
    assert (config.cluster, config.interval, config.token) == ("flag-cluster", 2.0, "t0ken")
    assert config.spool_max_bytes == 2**30
    assert (config.otlp_port, config.metrics_port, config.flush_interval, config.no_gpu) == (
        4318,
        9401,
        5.0,
        False,
    )
    assert level == "INFO"


def test_switches_and_urls() -> None:
    config, _ = parse_config(
        [
            "--server",
            "https://iw.example.com/",
            "--no-gpu",
            "--engine-metrics",
            "http://127.0.0.1:8000/metrics",
            "--engine-pid",
            "4242",
        ],
        {},
    )
    assert (config.server, config.no_gpu, config.engine_pid) == ("https://iw.example.com", True, 4242)
    assert config.engine_metrics == "http://127.0.0.1:8000/metrics"


def test_a_bad_value_names_its_flag_or_variable() -> None:
    with pytest.raises(ConfigError, match="INFERWATCH_COLLECTOR_INTERVAL"):
        build_config({}, {"INFERWATCH_COLLECTOR_SERVER": "http://x", "INFERWATCH_COLLECTOR_INTERVAL": "soon"})
    with pytest.raises(ConfigError, match="--server"):
        build_config({}, {})
    with pytest.raises(ConfigError, match="--energy-interval"):
        build_config({"server": "http://x", "interval": "20s", "energy_interval": "10s"}, {})


def test_the_slow_reads_left_to_their_defaults_follow_a_slower_interval() -> None:
    config = build_config({"server": "http://x", "interval": "90s"}, {})  # defaults: 60 s and 30 s
    assert (config.interval, config.energy_interval, config.process_interval) == (90.0, 90.0, 90.0)
    config = build_config({"server": "http://x", "interval": "45s"}, {})
    assert (config.energy_interval, config.process_interval) == (60.0, 45.0)


@pytest.mark.parametrize(
    "argv",
    [
        ["--server", "ftp://x"],
        ["--server", "http://x", "--otlp-port", "70000"],
        ["--server", "http://x", "--interval", "0s"],
        ["--bogus"],
        ["--server", "http://x", "--engine-pid", "-3"],
    ],
)
def test_bad_flags_exit_2_with_a_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and err.count("\n") <= 20


def test_help_exits_0_and_names_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(opt.flag in out and opt.env in out for opt in OPTIONS)


def test_options_and_the_config_object_list_the_same_settings() -> None:
    assert [o.attr for o in OPTIONS] == [f.name for f in dataclasses.fields(CollectorConfig)]


def test_the_operator_doc_lists_every_flag_and_environment_variable() -> None:
    text = DOC.read_text()
    missing = [name for o in OPTIONS for name in (o.flag, o.env) if f"`{name}`" not in text]
    assert not missing, f"docs/collector.md does not mention {missing}"


def test_nothing_is_started_by_importing_the_collector() -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    import collector.runtime  # noqa: F401

    assert {t.name for t in threading.enumerate()} == before
