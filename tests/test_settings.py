"""Settings: read once from flags, environment and defaults; bad values name themselves."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.settings import load_settings


def test_the_environment_is_read_and_a_flag_overrides_it() -> None:
    env = {"SHAREGUARD_PROXY_PORT": "9001", "SHAREGUARD_MAX_BODY_BYTES": "2m"}
    assert load_settings(environ=env).proxy_port == 9001
    assert load_settings(environ=env).max_body_bytes == 2 << 20
    assert load_settings({"proxy_port": "9002"}, environ=env).proxy_port == 9002


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SHAREGUARD_PROXY_PORT": "70000"}, "proxy_port"),
        ({"SHAREGUARD_INTRANET_NETWORKS": "10.0.0.0/33"}, "intranet_networks"),
        ({"SHAREGUARD_JOURNAL_BATCH": "0"}, "journal_batch"),
        ({"SHAREGUARD_ALERT_WEBHOOK_MIN_SEVERITY": "urgent"}, "alert_webhook_min_severity"),
        ({"SHAREGUARD_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook"}, "alert_webhook_secret"),
        ({"SHAREGUARD_AUDIT_INLINE_COMMIT": "sometimes"}, "audit_inline_commit"),
    ],
    ids=[
        "port out of range",
        "network with a bad prefix",
        "zero batch",
        "unknown severity",
        "webhook without a secret",
        "switch that is neither true nor false",
    ],
)
def test_when_a_setting_is_bad_then_startup_fails_naming_it(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=env)


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        load_settings({"proxy_prot": "1"}, environ={})


def test_when_the_expiry_warning_is_beyond_the_working_day_calendar_then_startup_fails() -> None:
    from gateway.workdays import MAX_WORKING_DAYS

    env = {"SHAREGUARD_EXPIRY_WARNING_DAYS": str(MAX_WORKING_DAYS + 1)}
    with pytest.raises(ConfigError, match=f"expiry_warning_days.*at most {MAX_WORKING_DAYS}"):
        load_settings(environ=env)
    limit = {"SHAREGUARD_EXPIRY_WARNING_DAYS": str(MAX_WORKING_DAYS)}
    assert load_settings(environ=limit).expiry_warning_days == MAX_WORKING_DAYS
