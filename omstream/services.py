"""The composition root: each component's configuration, built from the settings.

Only `omstream` reads `Settings`; every component takes the few values it needs, in a configuration
of its own (`WorkerConfig`, `SinkConfig`, `ControlConfig`, `MasterConfig`, the emitter's arguments).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from control.audit import AuditFeed
from control.client import OpsTopics
from control.dispatch import MasterAddress
from control.pki import CONTROL_CLIENT, Pki
from control.policy import DEFAULT_POLICY
from control.service import ControlConfig
from control.signing import load_verify_key
from masters.master import ALLOWLIST_FILE
from masters.server import MasterConfig
from omstream.settings import Settings, SettingsConflict
from stream.alerts import AlertRules, BaselineRules
from stream.alerts.records import alert_rows
from stream.alerts.service import AlertsConfig
from stream.app import FaustConfig, Takes
from stream.emitter import Emitter
from stream.kafka import GroupTimings
from stream.processed import Stage
from stream.sink import SinkConfig, TableFeed
from stream.topics import Topics
from stream.worker import WorkerConfig


def topics(settings: Settings) -> Topics:
    return Topics(
        events=settings.events_topic,
        dead_letters=settings.dlq_topic,
        windows=settings.windows_topic,
        checkpoints=settings.checkpoints_topic,
        processed=settings.processed_topic,
        alerts=settings.alerts_topic,
    )


def faust_config(settings: Settings, app_id: str, bootstrap: str) -> FaustConfig:
    return FaustConfig(
        app_id=app_id,
        bootstrap=bootstrap,
        datadir=settings.state_dir / f"faust-{app_id}",
        timings=GroupTimings(settings.session_timeout_s),
        log_level=settings.log_level,
        fetch_wait_ms=settings.fetch_wait_ms,
    )


def takes(settings: Settings) -> Takes:
    return Takes(settings.take_messages, settings.take_fetches, settings.take_seconds)


def worker_config(settings: Settings, bootstrap: str) -> WorkerConfig:
    return WorkerConfig(
        faust=faust_config(settings, settings.consumer_group, bootstrap),
        topics=topics(settings),
        partitions=settings.events_partitions,
        accept_range=settings.accept_range,
        takes=takes(settings),
        timezone=settings.timezone,
        grace_seconds=settings.grace_seconds,
        funnel_conversion_seconds=settings.funnel_conversion_seconds,
        flush_seconds=settings.window_flush_seconds,
        snapshot_seconds=settings.window_snapshot_seconds,
    )


def sink_config(settings: Settings, bootstrap: str) -> SinkConfig:
    audit = AuditFeed(Pki(settings.pki_dir).results_public_key)
    audit_feed = TableFeed(settings.ops_results_topic, "ops_audit_log", Stage.AUDIT, audit)
    alerts_feed = TableFeed(settings.alerts_topic, "alerts", Stage.ALERTS, alert_rows)
    return SinkConfig(
        faust=faust_config(settings, settings.sink_group, bootstrap),
        topics=topics(settings),
        partitions=settings.events_partitions,
        accept_range=settings.accept_range,
        takes=takes(settings),
        feeds=(audit_feed, alerts_feed),
        alerts=alerts_config(settings, bootstrap) if settings.alert_metrics else None,
    )


def alert_rules(settings: Settings) -> AlertRules:
    return AlertRules(
        metrics=tuple(settings.alert_metrics),
        baseline=BaselineRules(
            days=settings.alert_baseline_days,
            min_days=settings.alert_min_history_days,
            neighbourhood=settings.alert_neighbourhood_minutes,
            level_minutes=settings.alert_level_minutes,
            level_band=settings.alert_level_band,
        ),
        lean_score=settings.alert_lean_score,
        up_ratio=settings.alert_up_ratio,
        down_ratio=settings.alert_down_ratio,
        score=settings.alert_score,
        confirm_minutes=settings.alert_confirm_minutes,
        strong_score=settings.alert_strong_score,
        strong_ratio=settings.alert_strong_ratio,
        close_minutes=settings.alert_close_minutes,
    )


def alerts_config(settings: Settings, bootstrap: str) -> AlertsConfig:
    return AlertsConfig(
        bootstrap=bootstrap,
        windows_topic=settings.windows_topic,
        alerts_topic=settings.alerts_topic,
        partitions=settings.events_partitions,
        rules=alert_rules(settings),
    )


def emitter(settings: Settings, bootstrap: str, pack: int | None = None, source: str = "replay") -> Emitter:
    return Emitter(
        bootstrap,
        settings.events_topic,
        settings.dlq_topic,
        settings.accept_range,
        pack=pack or settings.pack_size,
        source=source,
    )


def control_public_key(settings: Settings) -> Ed25519PublicKey | None:
    """The key results are checked with, where this machine has it (an operator's may not)."""
    path = Pki(settings.pki_dir).results_public_key
    return load_verify_key(path) if path.is_file() else None


def ops_topics(settings: Settings) -> OpsTopics:
    return OpsTopics(commands=settings.ops_commands_topic, results=settings.ops_results_topic)


def control_config(settings: Settings, bootstrap: str) -> ControlConfig:
    if not settings.masters:
        raise SettingsConflict(
            'no masters configured: set OMSTREAM_MASTERS, e.g. {"bj": ["master-bj-1:18861"]}'
        )
    return ControlConfig(
        bootstrap=bootstrap,
        commands_topic=settings.ops_commands_topic,
        results_topic=settings.ops_results_topic,
        admitted_topic=settings.ops_admitted_topic,
        group=settings.control_group,
        timings=GroupTimings(settings.session_timeout_s),
        masters={
            idc: [MasterAddress.parse(address) for address in addresses]
            for idc, addresses in settings.masters.items()
        },
        tls=Pki(settings.pki_dir).files(CONTROL_CLIENT),
        signing_key=Pki(settings.pki_dir).results_key,
        policy_file=settings.policy_file or DEFAULT_POLICY,
        operators_file=settings.operators_file,
        timeout_s=settings.ops_timeout_s,
        connect_timeout_s=settings.ops_connect_timeout_s,
        idc_concurrency=settings.ops_idc_concurrency,
        calls_per_master=settings.ops_calls_per_master,
        max_lifetime_s=settings.ops_max_lifetime_s,
    )


def master_config(settings: Settings, idc: str, name: str, port: int | None = None) -> MasterConfig:
    return MasterConfig(
        idc=idc,
        name=name,
        host=settings.master_host,
        port=settings.master_port if port is None else port,
        tls=Pki(settings.pki_dir).files(name),
        client=CONTROL_CLIENT,
        operators_file=settings.operators_file,
        ledger_dir=settings.idc_ledger_dir or settings.state_dir / "idcs" / idc,
        allowlist_file=settings.command_allowlist_file or ALLOWLIST_FILE,
        timeout_s=settings.ops_timeout_s,
        max_lifetime_s=settings.ops_max_lifetime_s,
        salt_master_config=settings.salt_master_config,
        salt_dir=settings.state_dir / "salt" / name,
    )
