"""deploy/k8s: `make k8s-check` passes on the manifests, refuses broken copies of them, and the
rendered manifests agree with the code (topic and group names, drain timeout, ports, secrets).

The check runs the real kustomize and kubeconform (built once from the Go module proxy and cached,
scripts/k8s-check.sh) against the vendored schemas: no network, no cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import (
    ApiSettings,
    CommonSettings,
    OrchestratorSettings,
    WorkerSettings,
    load,
)
from events.topics import TOPIC_RETENTION, Topics
from schemas.durations import parse_duration

ROOT = Path(__file__).resolve().parents[3]
CHECK = ROOT / "scripts" / "k8s-check.sh"
K8S = ROOT / "deploy" / "k8s"
RENDERED = ["base", "overlays/example", "overlays/strimzi"]
# The first check on a fresh machine builds kustomize and kubeconform (~70 s on 2 busy CPUs).
pytestmark = pytest.mark.timeout(600)

Manifest = dict[str, Any]


def _check(*dirs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), *map(str, dirs)], capture_output=True, text=True, timeout=600, check=False
    )


def _render(directory: Path) -> list[Manifest]:
    out = subprocess.run(
        [str(CHECK), "--render", str(directory)], capture_output=True, text=True, timeout=600, check=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module", params=RENDERED)
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    return _render(K8S / str(request.param))


def _of(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def _config(manifests: list[Manifest]) -> dict[str, str]:
    (config,) = _of(manifests, "ConfigMap")
    data: dict[str, str] = config["data"]
    return data


def _pods(manifests: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """(workload, pod spec) for every Deployment, StatefulSet and Job."""
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield m, m["spec"]["template"]["spec"]


def _env(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


# -- the check itself -------------------------------------------------------------------------------


def test_every_kustomization_renders_and_validates_against_the_vendored_schemas() -> None:
    result = _check()
    assert result.returncode == 0, result.stderr
    for name in RENDERED:
        assert f"ok   deploy/k8s/{name}: Summary:" in result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stderr


def _replace(path: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(copy: Path) -> None:
        text = (copy / path).read_text()
        assert old in text, f"{old!r} is not in {path}: the breakage would test nothing"
        (copy / path).write_text(text.replace(old, new, 1))

    return edit


def _add_file(path: str, text: str, listed_in: str) -> Callable[[Path], None]:
    def edit(copy: Path) -> None:
        (copy / path).write_text(text)
        _replace(listed_in, "resources:\n", f"resources:\n  - {Path(path).name}\n")(copy)

    return edit


BROKEN = {
    "a misspelt field of a pod spec": (
        _replace("base/api.yaml", "      serviceAccountName: comet", "      serviceAcountName: comet"),
        ["Deployment comet-api is invalid", "additional properties 'serviceAcountName' not allowed"],
    ),
    "a container without its required name": (
        _replace("base/orchestrator.yaml", "        - name: orchestrator\n", "        - \n"),
        ["StatefulSet comet-orchestrator is invalid", "missing property 'name'"],
    ),
    "a wrongly typed field (a port as a word with spaces)": (
        _replace("base/api.yaml", "      port: 80\n", "      port: eighty please\n"),
        ["Service comet-api is invalid"],
    ),
    "a KEDA trigger whose threshold is a number, not a string": (
        _replace("worker-pool/scaledobject.yaml", 'lagThreshold: "10"', "lagThreshold: 10"),
        ["ScaledObject comet-worker-default is invalid", "lagThreshold': got number, want string"],
    ),
    "a KEDA trigger without its type": (
        _replace("worker-pool/scaledobject.yaml", "    - type: prometheus\n", "    - typo: prometheus\n"),
        ["ScaledObject comet-worker-default is invalid", "missing property 'type'"],
    ),
    "a ScaledObject field KEDA does not have": (
        _replace("worker-pool/scaledobject.yaml", "  pollingInterval: 15", "  pollInterval: 15"),
        ["additional properties 'pollInterval' not allowed"],
    ),
    "a kind with no vendored schema (never fetched from the network)": (
        _add_file(
            "base/ingress.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: comet\nspec: {}\n",
            "base/kustomization.yaml",
        ),
        ["Ingress comet failed validation: could not find schema for Ingress"],
    ),
    "a kustomization that does not build": (
        _replace("base/kustomization.yaml", "  - orchestrator.yaml\n", "  - orchestrators.yaml\n"),
        ["FAIL", "kustomize build"],
    ),
}


@pytest.mark.parametrize("breakage", list(BROKEN))
def test_a_broken_copy_of_the_manifests_is_refused(tmp_path: Path, breakage: str) -> None:
    edit, expected = BROKEN[breakage]
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("schemas"))
    edit(copy)
    result = _check(copy / "base")
    assert result.returncode != 0, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_a_broken_strimzi_resource_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("schemas"))
    _replace("overlays/strimzi/kafka.yaml", "  roles:\n", "  rolez:\n")(copy)
    result = _check(copy / "overlays" / "strimzi")
    assert result.returncode != 0
    assert "KafkaNodePool combined is invalid" in result.stderr
    assert "missing property 'roles'" in result.stderr


# -- the manifests agree with the code ------------------------------------------------------------


def test_each_pool_scales_on_its_own_dispatch_topic_group_and_queue(rendered: list[Manifest]) -> None:
    config = _config(rendered)
    topics = Topics(config["COMET_TOPIC_NAMESPACE"])
    workers = {m["metadata"]["name"]: m for m in _of(rendered, "StatefulSet")}
    scaled = _of(rendered, "ScaledObject")
    assert scaled
    for so in scaled:
        target = workers[so["spec"]["scaleTargetRef"]["name"]]
        (container,) = target["spec"]["template"]["spec"]["containers"]
        pool = _env(container)["COMET_POOL"]["value"]
        assert target["spec"]["template"]["metadata"]["labels"]["comet.dev/pool"] == pool
        triggers = {t["type"]: t["metadata"] for t in so["spec"]["triggers"]}
        assert set(triggers) == {"kafka", "prometheus"}
        assert triggers["kafka"]["topic"] == topics.dispatch(pool)
        assert triggers["kafka"]["consumerGroup"] == topics.worker_group(pool)
        assert triggers["kafka"]["bootstrapServersFromEnv"] in config
        query = triggers["prometheus"]["query"]
        # Every API pod reports the same pool-wide gauges (api/queue_signals.py): max, never sum.
        for gauge in ("comet_queue_queued_stages", "comet_queue_running_stages"):
            assert f'max({gauge}{{pool="{pool}"}})' in query
        assert "sum(" not in query
        assert float(triggers["prometheus"]["threshold"]) == float(
            _env(container)["COMET_CONCURRENCY"]["value"]
        )
        assert "replicas" not in target["spec"], "KEDA owns the replica count"


def test_one_example_pool_may_scale_to_zero(rendered: list[Manifest]) -> None:
    minimums = {so["metadata"]["name"]: so["spec"]["minReplicaCount"] for so in _of(rendered, "ScaledObject")}
    if len(minimums) > 1:
        assert minimums["comet-worker-linux-arm64"] == 0
        assert minimums["comet-worker-default"] >= 1


def test_workers_outlast_their_drain_timeout_before_being_killed(rendered: list[Manifest]) -> None:
    config = _config(rendered)
    drain = parse_duration(config["COMET_DRAIN_TIMEOUT_S"]) + parse_duration(config["COMET_KILL_GRACE_S"])
    for worker in _of(rendered, "StatefulSet"):
        if worker["metadata"]["labels"]["app.kubernetes.io/component"] == "worker":
            assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain


def test_orchestrators_and_workers_are_named_by_their_stable_pod_names(rendered: list[Manifest]) -> None:
    for workload in _of(rendered, "StatefulSet"):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        source = _env(container)["COMET_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert source == "metadata.name"
    kinds = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m["kind"]
        for m in rendered
        if m["kind"] in ("Deployment", "StatefulSet")
    }
    assert kinds == {"api": "Deployment", "orchestrator": "StatefulSet", "worker": "StatefulSet"}


def test_pods_are_non_root_read_only_and_sized(rendered: list[Manifest]) -> None:
    for _, pod in _pods(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        mounts_by_volume = {v["name"] for v in pod["volumes"]}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert set(container["resources"]) == {"requests", "limits"}
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts
            assert {m["name"] for m in container["volumeMounts"]} <= mounts_by_volume


def test_every_path_a_process_writes_is_a_mounted_volume(rendered: list[Manifest]) -> None:
    config = _config(rendered)
    for workload, pod in _pods(rendered):
        (container,) = pod["containers"]
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        writes = {
            "api": ["COMET_GIT_CACHE_DIR"],
            "orchestrator": ["COMET_GIT_CACHE_DIR", "COMET_ARCHIVE_DIR"],
            "worker": ["COMET_GIT_CACHE_DIR", "COMET_WORKSPACE_DIR"],
            "migrate": [],
        }[component]
        for setting in writes:
            path = config[setting]
            assert any(path == m or path.startswith(m + "/") for m in mounts), (component, setting)


def test_secrets_come_only_by_reference(rendered: list[Manifest]) -> None:
    assert not _of(rendered, "Secret")
    assert not {"COMET_DATABASE_URL", "COMET_JWT_SECRET", "COMET_SECRET_KEY"} & set(_config(rendered))
    for workload, pod in _pods(rendered):
        (container,) = pod["containers"]
        env = _env(container)
        assert env["COMET_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "comet-secrets"
        for name in ("COMET_JWT_SECRET", "COMET_SECRET_KEY"):
            if name in env:
                assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "comet-secrets"
        if workload["metadata"]["labels"]["app.kubernetes.io/component"] == "api":
            assert {"COMET_JWT_SECRET", "COMET_SECRET_KEY"} <= set(env)


def test_probes_ask_healthz_and_readyz_on_the_configured_ports(rendered: list[Manifest]) -> None:
    config = _config(rendered)
    for workload, pod in _pods(rendered):
        if workload["kind"] == "Job":
            continue
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        api = workload["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
        expected = int(config["COMET_API_PORT"] if api else config["COMET_HEALTH_PORT"])
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path
            assert ports[get["port"]] == expected
        assert container["args"] == [workload["metadata"]["labels"]["app.kubernetes.io/component"]]


def test_every_disruption_budget_covers_exactly_one_component(rendered: list[Manifest]) -> None:
    selectors = [pdb["spec"]["selector"]["matchLabels"] for pdb in _of(rendered, "PodDisruptionBudget")]
    workloads = [m for m in rendered if m["kind"] in ("Deployment", "StatefulSet")]
    assert len(selectors) == len(workloads)
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [s for s in selectors if s.items() <= labels.items()]
        assert len(matching) == 1, workload["metadata"]["name"]


def test_the_api_scales_on_cpu() -> None:
    (hpa,) = _of(_render(K8S / "base"), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "comet-api",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_the_strimzi_topics_are_the_ones_comet_uses_with_its_partitions_and_retention() -> None:
    manifests = _render(K8S / "overlays" / "strimzi")
    config = _config(manifests)
    topics = Topics(config["COMET_TOPIC_NAMESPACE"])
    pools = [
        _env(m["spec"]["template"]["spec"]["containers"][0])["COMET_POOL"]["value"]
        for m in _of(manifests, "StatefulSet")
        if m["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]
    declared = {t["spec"]["topicName"]: t["spec"] for t in _of(manifests, "KafkaTopic")}
    assert set(declared) == set(topics.core()) | {topics.dispatch(p) for p in pools}
    for name, spec in declared.items():
        assert spec["partitions"] == int(config["COMET_KAFKA_PARTITIONS"])
        assert spec["config"].items() >= topics.retention(name).items()
        assert int(spec["config"]["min.insync.replicas"]) < spec["replicas"]
    assert set(TOPIC_RETENTION) == {
        name.removeprefix(f"{topics.namespace}.").split(".")[0] for name in declared
    }
    (kafka,) = _of(manifests, "Kafka")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap.{kafka['metadata']['namespace']}.svc:9092"
    assert config["COMET_KAFKA_BOOTSTRAP_SERVERS"] == bootstrap


def test_the_image_runs_comet_as_the_user_and_with_the_paths_the_manifests_expect() -> None:
    """No container engine runs here: the Dockerfile is checked against the manifests by reading."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    (user,) = (line.split()[1] for line in lines if line.startswith("USER "))
    (entrypoint,) = (line for line in lines if line.startswith("ENTRYPOINT "))
    assert entrypoint.endswith('"comet"]')
    manifests = _render(K8S / "base")
    config = _config(manifests)
    for _, pod in _pods(manifests):
        assert user == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    text = "\n".join(lines)
    for setting in ("COMET_WORKSPACE_DIR", "COMET_GIT_CACHE_DIR", "COMET_ARCHIVE_DIR"):
        assert f"{setting}={config[setting]}" in text


SETTINGS: dict[str, type[CommonSettings]] = {
    "api": ApiSettings,
    "orchestrator": OrchestratorSettings,
    "worker": WorkerSettings,
    "migrate": CommonSettings,
}


def test_each_process_accepts_the_settings_its_pod_gives_it(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap, the literal env and (stand-ins for) the secrets load without a SettingsError."""
    config = _config(rendered)
    for workload, pod in _pods(rendered):
        (container,) = pod["containers"]
        for name in [n for n in os.environ if n.startswith("COMET_")]:
            monkeypatch.delenv(name)
        env = dict(config)
        for name, entry in _env(container).items():
            if "value" in entry:
                env[name] = entry["value"]
            elif "secretKeyRef" in entry["valueFrom"]:
                key = entry["valueFrom"]["secretKeyRef"]["key"]
                env[name] = {"database-url": "postgresql+asyncpg://comet:pw@postgres.example:5432/comet"}.get(
                    key, "x" * 48
                )
            else:
                env[name] = f"{workload['metadata']['name']}-0"  # metadata.name of the pod
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = load(SETTINGS[container["args"][0]])
        assert settings.topic_namespace == config["COMET_TOPIC_NAMESPACE"]
        if isinstance(settings, WorkerSettings):
            assert settings.pool == env["COMET_POOL"]
            assert settings.workspace_dir == config["COMET_WORKSPACE_DIR"]
            assert settings.drain_timeout_s == parse_duration(config["COMET_DRAIN_TIMEOUT_S"])
