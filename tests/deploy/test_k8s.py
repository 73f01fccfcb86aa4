"""The Kubernetes examples: every object passes the Kubernetes JSON schemas (strict, for the
oldest and newest versions we claim), and the objects fit together: references resolve,
Services select pods, probes and resources are set, the collector's flags and variables are
ones it reads, and vLLM exports to the collector beside it.

Offline: the schemas ship inside the kubernetes-validate package. No cluster is contacted."""

from __future__ import annotations

import copy
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from api.settings import Settings
from collector.cli import parse_config
from tests.deploy.common import ROOT, unknown_inferwatch_names

K8S = ROOT / "deploy" / "k8s"
VERSIONS = ("1.29.0", "1.37.0")  # native sidecars are on by default from 1.29
FILES = sorted(K8S.glob("*.yaml"))


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return [doc for path in FILES for doc in _load(path)]


def _find(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _pod(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def _container(pod: dict, name: str) -> dict:
    (found,) = [c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == name]
    return found


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def _secret_value(objects: list[dict], name: str, key: str) -> str:
    return _find(objects, "Secret", name)["stringData"][key]


def _environment(objects: list[dict], container: dict, *, placeholders: dict[str, str]) -> dict[str, str]:
    """A container's environment as the kubelet would build it from these manifests; values
    from the downward API come from `placeholders` (by variable name)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = _secret_value(objects, ref["name"], ref["key"])
        else:
            env[item["name"]] = placeholders[item["name"]]
    return env


# --- schemas -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_object_passes_the_kubernetes_schema(path: Path, version: str) -> None:
    for doc in _load(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_rejects_an_unknown_field(objects: list[dict]) -> None:
    broken = copy.deepcopy(_find(objects, "Deployment", "inferwatch-server"))
    _pod(broken)["containers"][0]["livenesProbe"] = {"tcpSocket": {"port": 8000}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


# --- the pieces fit together ---------------------------------------------------------------------


def test_every_secret_and_config_map_reference_resolves(objects: list[dict]) -> None:
    for workload in (o for o in objects if o["kind"] in {"Deployment", "DaemonSet"}):
        pod = _pod(workload)
        for container in pod.get("initContainers", []) + pod["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in _find(objects, "Secret", ref["name"])["stringData"], ref
            for source in container.get("envFrom", []):
                _find(objects, "ConfigMap", source["configMapRef"]["name"])
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in pod.get("volumes", [])}, container["name"]


def test_every_service_selects_pods_and_names_their_ports(objects: list[dict]) -> None:
    workloads = [o for o in objects if o["kind"] in {"Deployment", "DaemonSet"}]
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        (target,) = [
            w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        ports = {p["name"] for c in _pod(target)["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for workload in workloads:
        assert (
            workload["spec"]["selector"]["matchLabels"].items()
            <= workload["spec"]["template"]["metadata"]["labels"].items()
        )


def test_the_server_is_replicated_probed_bounded_and_unprivileged(objects: list[dict]) -> None:
    deployment = _find(objects, "Deployment", "inferwatch-server")
    assert deployment["spec"]["replicas"] >= 2
    pod = _pod(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    server = _container(pod, "server")
    assert server["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # Liveness must not depend on ClickHouse: an outage would restart every replica.
    assert "tcpSocket" in server["livenessProbe"]
    assert {"cpu", "memory"} <= set(server["resources"]["requests"]) and "memory" in server["resources"][
        "limits"
    ]
    assert server["args"][:1] == ["serve"]


def test_the_server_environment_is_valid_settings(
    objects: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _container(_pod(_find(objects, "Deployment", "inferwatch-server")), "server")
    env = _environment(objects, server, placeholders={})
    assert not unknown_inferwatch_names(set(env))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.clickhouse_url.startswith("http://") and settings.database_url.startswith(
        "postgresql+psycopg"
    )
    assert settings.notify.smtp_password.get_secret_value() == "CHANGE-ME"


def test_the_daemonset_sees_every_gpu_without_taking_any(objects: list[dict]) -> None:
    daemonset = _find(objects, "DaemonSet", "inferwatch-collector")
    pod = _pod(daemonset)
    assert pod["hostPID"] is True
    collector = _container(pod, "collector")
    env = {e["name"]: e.get("value") for e in collector["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    for section in ("requests", "limits"):
        assert "nvidia.com/gpu" not in collector["resources"].get(section, {})
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    otlp = next(p for p in collector["ports"] if p["name"] == "otlp-http")
    assert otlp["containerPort"] == otlp["hostPort"] == int(_flags(collector["args"])["otlp-port"])
    assert _flags(collector["args"])["otlp-host"] == "0.0.0.0"
    # The spool on the node's disk, handed to the collector's uid by the one root step.
    spool = next(v for v in pod["volumes"] if v["name"] == "spool")
    assert "hostPath" in spool
    owner = _container(pod, "spool-owner")
    assert owner["command"][:2] == [
        "chown",
        f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}",
    ]
    assert owner["securityContext"]["capabilities"]["add"] == ["CHOWN"]


@pytest.mark.parametrize(
    ("kind", "name", "container", "secret"),
    [
        ("DaemonSet", "inferwatch-collector", "collector", "inferwatch-collector"),
        ("Deployment", "vllm-chat", "inferwatch-collector", "inferwatch-collector-sidecar"),
    ],
)
def test_each_collector_runs_with_flags_and_variables_the_collector_accepts(
    objects: list[dict], kind: str, name: str, container: str, secret: str
) -> None:
    spec = _container(_pod(_find(objects, kind, name)), container)
    env = _environment(
        objects,
        spec,
        placeholders={
            "INFERWATCH_COLLECTOR_HOST_NAME": "gpu-node-1",
            "INFERWATCH_COLLECTOR_INSTANCE": "pod-1",
        },
    )
    assert not unknown_inferwatch_names(set(env))
    assert spec["args"][0] == "collect"
    config, _ = parse_config(spec["args"][1:], env)
    assert config.server == "http://inferwatch.inferwatch.svc:8000"
    assert config.token == _secret_value(objects, secret, "token")
    assert (config.host_name, config.instance) == ("gpu-node-1", "pod-1")
    assert config.spool_dir == next(m["mountPath"] for m in spec["volumeMounts"] if m["name"] == "spool")
    assert any(p["containerPort"] == config.metrics_port for p in spec["ports"])
    # The collectors' token is an ingest token the server registers.
    tokens = dict(
        p.split(":", 1) for p in _secret_value(objects, "inferwatch-server", "bootstrap-tokens").split(",")
    )
    assert tokens["ingest"] == config.token


def test_the_server_service_is_where_collectors_ship(objects: list[dict]) -> None:
    service = _find(objects, "Service", "inferwatch")
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    assert (service["metadata"]["namespace"], port) == ("inferwatch", 8000)


def test_vllm_exports_to_its_sidecar_which_scrapes_it(objects: list[dict]) -> None:
    pod = _pod(_find(objects, "Deployment", "vllm-chat"))
    vllm, collector = _container(pod, "vllm"), _container(pod, "inferwatch-collector")
    assert collector in pod["initContainers"] and collector["restartPolicy"] == "Always"
    assert {e["name"]: e["value"] for e in vllm["env"]}[
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    ] == "http/protobuf"
    endpoint = urlsplit(_flags(vllm["args"])["otlp-traces-endpoint"])
    collector_flags = _flags(collector["args"])
    assert (endpoint.hostname, endpoint.port, endpoint.path) == (
        "127.0.0.1",
        int(collector_flags["otlp-port"]),
        "/v1/traces",
    )
    scrape = urlsplit(collector_flags["engine-metrics"])
    assert (scrape.hostname, scrape.port, scrape.path) == (
        "127.0.0.1",
        int(_flags(vllm["args"])["port"]),
        "/metrics",
    )
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
