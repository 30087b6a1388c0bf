"""Settings for every OMStream component, from environment variables and an optional `.env` file.

Only the two connection settings shared with the rest of a deployment use bare names
(`KAFKA_BOOTSTRAP`, `CLICKHOUSE_DSN`); everything else is prefixed `OMSTREAM_`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.alerts import METRICS
from stream.events import AcceptRange, FixedRange, RecentRange
from stream.topics import Topics

DAY_SECONDS = 86_400


class SettingsConflict(ValueError):
    """Settings that each parse but do not go together, miss what a command needs, or name a port in use."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OMSTREAM_", env_file=".env", extra="ignore", populate_by_name=True
    )

    kafka_bootstrap: str = Field(
        "",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "OMSTREAM_KAFKA_BOOTSTRAP"),
        description="host:port[,host:port]; empty = the embedded Tansu broker of `omstream up`/`demo`",
    )
    clickhouse_dsn: str = Field(
        "",
        validation_alias=AliasChoices("CLICKHOUSE_DSN", "OMSTREAM_CLICKHOUSE_DSN"),
        description="e.g. http://user:pass@clickhouse:8123/omstream; empty = chDB under the state directory",
    )
    clickhouse_cluster: str = Field(
        "",
        pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$",
        description="a ClickHouse cluster: `migrate` creates Replicated + Distributed tables ON CLUSTER; "
        "empty = one server",
    )
    state_dir: Path = Path(".omstream")
    timezone: str = "Asia/Shanghai"

    events_topic: str = Topics.events
    dlq_topic: str = Topics.dead_letters
    processed_topic: str = Topics.processed
    windows_topic: str = Topics.windows
    checkpoints_topic: str = Topics.checkpoints
    events_partitions: int = Field(default=4, ge=1)
    consumer_group: str = Field(default="omstream", description="consumer group of the stream workers")
    sink_group: str = Field(default="omstream-sink", description="consumer group of the ClickHouse sink")

    # Events outside the accepted range are dead-lettered as `out_of_window`. By default it follows the
    # clock (live events); a historical data set's window is fixed with accept_from and accept_to.
    accept_from: datetime | None = Field(default=None, description="with accept_to: a fixed range")
    accept_to: datetime | None = Field(default=None, description="exclusive end of the fixed range")
    accept_days_back: float = Field(
        default=7, gt=0, description="without a fixed range: how old an accepted event may be, in days"
    )
    accept_seconds_ahead: int = Field(
        default=300, ge=0, description="without a fixed range: how far ahead of the clock an event may be"
    )

    pack_size: int = Field(default=250, ge=1, description="events per batched Kafka message (emitter)")
    take_messages: int = Field(
        default=1_000,
        ge=1,
        description="messages per take of the sink's other topics (dead letters, window rows, results)",
    )
    take_fetches: int = Field(
        default=4,
        ge=1,
        description="fetches of the events topic per take (each a partition's records of one fetch)",
    )
    take_seconds: float = Field(
        default=0.2,
        gt=0,
        description="max wait for a take to fill before it is processed: what a caught-up stream waits, "
        "at most, before its events are counted (a backlog fills takes sooner)",
    )
    grace_seconds: int = Field(default=600, ge=0, description="allowed lateness of the real-time windows")
    funnel_conversion_seconds: int = Field(default=86_400, gt=0, description="pv -> buy conversion window")
    window_flush_seconds: float = Field(
        default=2.0, gt=0, description="how often open windows are written (longer when that is costly)"
    )
    window_snapshot_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how often a worker's checkpoint carries its open windows, so that the events before "
        "it need not be kept to rebuild them",
    )
    fetch_wait_ms: int = Field(
        default=1500,
        ge=1,
        description="longest a worker's or the sink's fetch waits at the broker for records (Kafka answers "
        "as soon as some arrive; Tansu holds a caught-up fetch for most of it)",
    )
    log_level: str = "WARNING"
    metrics_port: int = Field(
        default=0, ge=0, description="Prometheus /metrics port of a service; 0 = any free port"
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address /metrics binds to: loopback, or in a deployment the service's own network",
    )
    session_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Kafka consumer session timeout; Tansu holds a JoinGroup for half of it",
    )

    # Real-time anomaly alerts (stream/alerts): the detector in the sink watches each global minute
    alerts_topic: str = Field(default=Topics.alerts, description="raised and closed alerts")
    alert_metrics: list[str] = Field(
        default_factory=lambda: list(METRICS),
        description="metrics watched, of pv, uv, cart, fav, buy, pay_rate (JSON list); [] = no detector",
    )
    alert_baseline_days: int = Field(default=7, ge=1, description="previous days the baseline looks at")
    alert_min_history_days: int = Field(
        default=3, ge=1, description="no alert before this many previous days of history"
    )
    alert_neighbourhood_minutes: int = Field(
        default=5, ge=0, description="minutes either side of the same minute of day in the baseline"
    )
    alert_level_minutes: int = Field(
        default=180, ge=2, description="recent minutes the level (today against the baseline) is taken over"
    )
    alert_level_band: float = Field(
        default=0.2, gt=0, description="minutes further than this (relative) from the baseline set no level"
    )
    alert_lean_score: float = Field(
        default=2.0, gt=0, description="score (deviation over spread) a minute needs to count as deviating"
    )
    alert_up_ratio: float = Field(default=1.5, gt=1, description="and observed/expected at least this (up)")
    alert_down_ratio: float = Field(
        default=0.7, gt=0, lt=1, description="or observed/expected at most this (down)"
    )
    alert_score: float = Field(
        default=5.0, gt=0, description="score of a run of deviating minutes that raises an alert"
    )
    alert_confirm_minutes: int = Field(default=2, ge=1, description="least minutes of such a run")
    alert_strong_score: float = Field(default=8.0, gt=0, description="one minute this strong raises at once")
    alert_strong_ratio: float = Field(
        default=2.0, gt=1, description="and this far off (twice up, half down), for a one-minute raise"
    )
    alert_close_minutes: int = Field(
        default=3, ge=1, description="minutes in a row back to normal that close an alert"
    )

    ops_commands_topic: str = "ops.commands"
    ops_results_topic: str = "ops.results"
    ops_admitted_topic: str = Field(
        default="ops.admitted", description="admitted command ids, the control replicas' shared replay memory"
    )
    control_group: str = Field(
        default="omstream-control", description="consumer group of the control service"
    )
    masters: dict[str, list[str]] = Field(
        default_factory=dict,
        description='masters per IDC as JSON, e.g. {"bj": ["master-bj-1:18861", "bj-2@10.0.0.2:18861"]}; '
        "`name@host:port` when the certificate name differs from the host; empty = the embedded masters",
    )
    master_host: str = Field(default="127.0.0.1", description="address `omstream master` listens on")
    idc_ledger_dir: Path | None = Field(
        default=None,
        description="the IDC's ledger of started commands: a directory every master of the IDC mounts "
        "(POSIX locks, one kernel); empty = <state>/idcs/<idc>",
    )
    master_port: int = Field(default=18861, ge=0, le=65535)
    policy_file: Path | None = Field(default=None, description="RBAC policy; empty = control/policy.yaml")
    salt_master_config: Path | None = Field(
        default=None, description="a salt-master config file: masters use LocalClient; empty = masterless"
    )
    command_allowlist_file: Path | None = Field(
        default=None, description="per-IDC named commands and states; empty = masters/salt/allowlist.yaml"
    )
    ops_timeout_s: float = Field(default=30.0, gt=0, description="time an IDC has to return a result set")
    ops_connect_timeout_s: float = Field(default=2.0, gt=0, description="TCP + TLS connect to a master")
    ops_idc_concurrency: int = Field(default=64, ge=1, description="commands in flight per IDC")
    ops_calls_per_master: int = Field(
        default=4,
        ge=1,
        description="calls in flight to one master (each its own connection); the commands queued "
        "meanwhile go together in the next call, claimed with one fsync",
    )
    ops_max_lifetime_s: int = Field(
        default=3600, gt=0, description="longest accepted expires_at - issued_at; bounds replay memory"
    )
    identity_dir: Path | None = Field(
        default=None,
        description="this service's own key material (`pki/`, `operators.json`), e.g. mounted read-only; "
        "empty = the state directory",
    )

    broker_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="the embedded broker's port on 127.0.0.1 (`omstream up`/`demo`), so producers are "
        "configured once; empty = a free port each run",
    )

    store_url: str = Field(
        default="",
        description="the embedded broker S3 store, whose batches retention releases (`omstream up` sets it)",
    )
    store_master_url: str = Field(
        default="",
        description="the embedded store's master, asked by retention to reclaim the disk of what it "
        "released (`omstream up` sets it)",
    )
    broker_release_s: float = Field(
        default=60.0,
        ge=0,
        description="embedded broker: how long a record batch stays once every reader is past it",
    )
    retention_every_s: float = Field(default=30.0, gt=0, description="embedded broker: retention passes")

    query_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="the sink answers read-only ClickHouse HTTP queries on 127.0.0.1:PORT (embedded chDB "
        "only; `omstream up` sets it); empty = no query endpoint",
    )
    query_password: SecretStr = Field(
        default=SecretStr(""),
        description="password of the query endpoint (`omstream up` generates it)",
    )

    @field_validator("accept_from", "accept_to", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # as compose passes an unset variable

    @field_validator("alert_metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown alert metrics {unknown}: choose from {', '.join(METRICS)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)  # raises on an unknown zone, so a typo fails at start, not in a query
        return value

    @model_validator(mode="after")
    def _fixed_range_has_both_ends(self) -> Settings:
        if (self.accept_from is None) != (self.accept_to is None):
            raise ValueError("set both OMSTREAM_ACCEPT_FROM and OMSTREAM_ACCEPT_TO, or neither")
        if self.accept_from is not None and self.accept_to is not None and self.accept_from >= self.accept_to:
            raise ValueError("OMSTREAM_ACCEPT_FROM must be before OMSTREAM_ACCEPT_TO")
        return self

    @cached_property
    def chdb_dir(self) -> Path:
        return (self.state_dir / "clickhouse").resolve()

    @property
    def pki_dir(self) -> Path:
        return (self.identity_dir or self.state_dir) / "pki"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def operators_file(self) -> Path:
        return (self.identity_dir or self.state_dir) / "operators.json"

    @property
    def resolved_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.chdb_dir}"

    @property
    def accept_range(self) -> AcceptRange:
        """Accepted event times: [accept_from, accept_to), or relative to the clock."""
        if self.accept_from is None or self.accept_to is None:
            return RecentRange(int(self.accept_days_back * DAY_SECONDS), self.accept_seconds_ahead)
        return FixedRange(int(self.accept_from.timestamp()), int(self.accept_to.timestamp()))

    def with_window(self, window: FixedRange) -> Settings:
        """These settings, accepting exactly `window` (a historical file's)."""
        bounds = {"accept_from": window.start, "accept_to": window.end}
        return self.model_copy(
            update={name: datetime.fromtimestamp(value, UTC) for name, value in bounds.items()}
        )
