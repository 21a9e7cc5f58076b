"""Every ShareGuard setting, declared once (name, type, default, help), parsed into frozen values.

A setting is read from, in order of precedence: an explicit override (a command-line flag),
the environment variable `SHAREGUARD_<NAME>`, and the default. Bad values fail at start-up with
one clear error naming the setting.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.keys import KeyRing

REPO_ROOT = Path(__file__).resolve().parent.parent


def _port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError("a port is 0-65535")
    return port


def _positive(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())


def _seconds(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 3600:
        raise ValueError("must be between 0 and 3600 seconds")
    return value


def _data_stream(raw: str) -> str:
    name = raw.strip()
    if (
        not name
        or name != name.lower()
        or any(c in name for c in ' "*\\<>|,#:/?')
        or name[0] in "-_+."
    ):
        raise ValueError(
            'a data stream name is lower case, without spaces or any of " * \\ < > | , # : / ?'
        )
    return name


def _optional(raw: str) -> str | None:
    return raw or None


def _severity(raw: str) -> str:
    if raw not in ("low", "medium", "high", "critical"):
        raise ValueError("one of low, medium, high, critical")
    return raw


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _working_days(raw: str) -> int:
    # Imported here: gateway.workdays imports this module.
    from gateway.workdays import MAX_WORKING_DAYS

    value = _count(raw)
    if value > MAX_WORKING_DAYS:
        raise ValueError(f"must be at most {MAX_WORKING_DAYS} working days")
    return value


def _size(raw: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    raw = raw.strip().lower()
    if raw and raw[-1] in units:
        return int(raw[:-1]) * units[raw[-1]]
    return int(raw)


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    default: str
    help: str

    @property
    def env(self) -> str:
        return f"SHAREGUARD_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("home", Path, ".shareguard", "state folder: databases, journal, keys, credentials"),
    Setting(
        "policies", Path, str(REPO_ROOT / "policies"), "folder of catalog, purposes, routes, model"
    ),
    Setting("proxy_host", str, "127.0.0.1", "address the gateway proxy listens on"),
    Setting("proxy_port", _port, "8080", "port the gateway proxy listens on (consumers call it)"),
    Setting("console_host", str, "127.0.0.1", "address the console and admin API listen on"),
    Setting("console_port", _port, "8081", "port of the console and admin API"),
    Setting(
        "upstream", str, "http://127.0.0.1:8090", "URL of the exchange platform behind the gateway"
    ),
    Setting("demo_host", str, "127.0.0.1", "address the demo exchange platform listens on"),
    Setting("demo_port", _port, "8090", "port of the demo exchange platform"),
    Setting(
        "database_url", _optional, "", "state database URL (SQLAlchemy); default: SQLite in home"
    ),
    Setting(
        "intranet_networks",
        _networks,
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16",
        "source networks counted as the government intranet (政务内网); others are internet",
    ),
    Setting(
        "max_body_bytes",
        _size,
        "64m",
        "largest upstream body buffered for shaping; larger is refused",
    ),
    Setting("journal_batch", _positive, "512", "most audit events committed by one fsync"),
    Setting("alert_webhook_url", _optional, "", "URL that receives each new alert (signed POST)"),
    Setting("alert_webhook_secret", _optional, "", "HMAC secret for the alert webhook signature"),
    Setting(
        "alert_webhook_min_severity", _severity, "medium", "least severe alert sent to the webhook"
    ),
    Setting(
        "alert_syslog",
        _optional,
        "",
        "syslog address for alerts: udp://host:514, tcp://host:601 or a socket path",
    ),
    Setting("alert_syslog_min_severity", _severity, "high", "least severe alert sent to syslog"),
    Setting(
        "incident_contact",
        str,
        "数据安全负责人（演示）security@example.gov.cn",
        "contact named in incident reports (PIPL Art. 57)",
    ),
    Setting(
        "redis_url",
        _optional,
        "",
        "Redis URL: policy-change notices between gateways, shared quota counters and "
        "detection windows; default: in process",
    ),
    Setting(
        "overdue_approval",
        _bool,
        "false",
        "an application unanswered past its deadline is deemed approved (逾期未答复视为同意)",
    ),
    Setting(
        "expiry_warning_days",
        _working_days,
        "10",
        "working days ahead of a grant's end that its expiry warning is raised",
    ),
    Setting(
        "audit_checkpoint_seconds",
        _seconds,
        "1",
        "longest time between signed journal checkpoints copied to the checkpoint log",
    ),
    Setting(
        "audit_seal_seconds",
        _seconds,
        "0.05",
        "longest time the journal's newest records wait for its signed seal (0: every commit"
        " signs one, on the request's path)",
    ),
    Setting(
        "audit_inline_commit",
        _bool,
        "true",
        "a request alone in the gateway commits its audit event on the event loop, without the"
        " writer thread's two hand-offs (off: every event goes through the writer thread)",
    ),
    Setting(
        "elasticsearch_url",
        _optional,
        "",
        "Elasticsearch URL; when set, audit events are shipped there and searched there",
    ),
    Setting(
        "elasticsearch_api_key",
        _optional,
        "",
        "Elasticsearch API key (base64 id:key), if the cluster needs one",
    ),
    Setting(
        "elasticsearch_ca_certs",
        _optional,
        "",
        "CA bundle that signed the cluster's certificate, for https URLs",
    ),
    Setting(
        "elasticsearch_data_stream",
        _data_stream,
        "shareguard-audit",
        "data stream the audit events are shipped to",
    ),
    Setting("elasticsearch_batch", _positive, "500", "most audit events sent in one bulk request"),
    Setting(
        "key_passphrase",
        _optional,
        "",
        "passphrase that seals the master keys at rest (prefer key_passphrase_file); default: a "
        "generated key-encryption key in the keys folder",
    ),
    Setting(
        "key_passphrase_file",
        _optional,
        "",
        "file holding the passphrase that seals the master keys at rest",
    ),
    Setting(
        "watermark_tag_limit",
        _positive,
        "5000000",
        "most records of one response whose keyed tags go to the watermark registry",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    policies: Path
    proxy_host: str
    proxy_port: int
    console_host: str
    console_port: int
    upstream: str
    demo_host: str
    demo_port: int
    database_url: str | None
    intranet_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    max_body_bytes: int
    journal_batch: int
    redis_url: str | None
    alert_webhook_url: str | None
    alert_webhook_secret: str | None
    alert_webhook_min_severity: str
    alert_syslog: str | None
    alert_syslog_min_severity: str
    incident_contact: str
    overdue_approval: bool
    expiry_warning_days: int
    audit_checkpoint_seconds: float
    audit_seal_seconds: float
    audit_inline_commit: bool
    elasticsearch_url: str | None
    elasticsearch_api_key: str | None
    elasticsearch_ca_certs: str | None
    elasticsearch_data_stream: str
    elasticsearch_batch: int
    key_passphrase: str | None
    key_passphrase_file: str | None
    watermark_tag_limit: int

    @property
    def state_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'state.db'}"

    @property
    def journal_path(self) -> Path:
        return self.home / "audit" / "journal.db"

    @property
    def credentials_path(self) -> Path:
        return self.home / "demo-credentials.json"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    def keyring(self) -> KeyRing:
        """The master keys, opened with the configured key-encryption key."""
        from gateway.keys import KeyRing

        passphrase_file = Path(self.key_passphrase_file) if self.key_passphrase_file else None
        return KeyRing.from_settings(self.keys_dir, self.key_passphrase, passphrase_file)


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Resolve every setting; raise one ConfigError that names each bad one."""
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(_BY_NAME)
    if unknown:
        raise ConfigError(f"未知设置 (unknown settings): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    problems: list[str] = []
    for setting in SETTINGS:
        if setting.name in overrides and not isinstance(overrides[setting.name], str):
            values[setting.name] = overrides[setting.name]
            continue
        raw = overrides.get(setting.name, environ.get(setting.env, setting.default))
        try:
            values[setting.name] = setting.parse(raw)
        except (ValueError, TypeError) as exc:
            problems.append(f"{setting.name} ({setting.env}={raw!r}): {exc}")
    if values.get("alert_webhook_url") and not values.get("alert_webhook_secret"):
        problems.append(
            "alert_webhook_url is set: set alert_webhook_secret too, to sign the alerts"
        )
    if problems:
        raise ConfigError("设置有误 (invalid settings):\n  " + "\n  ".join(problems))
    values["home"] = Path(values["home"]).resolve()
    values["policies"] = Path(values["policies"]).resolve()
    assert {f.name for f in fields(Settings)} == set(values)
    return Settings(**values)
