"""The gateway's parts, loaded once from settings and kept current: what every stage consults."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from detectors.engine import DetectionEngine
from detectors.kinds import DetectionContext
from detectors.kinds.honeytoken import Honeytoken
from detectors.windows import RedisWindows
from gateway import revision
from gateway.alerts.grant_actions import GrantResponses
from gateway.alerts.notify import Notifier, SyslogNotifier, WebhookNotifier
from gateway.alerts.service import AlertService
from gateway.applications.desk import ApplicationDesk
from gateway.applications.regulations import Regulations, load_regulations
from gateway.audit.journal import Journal, open_journal
from gateway.catalog import Catalog, load_catalog
from gateway.context import InFlight
from gateway.db import create_schema, make_engine
from gateway.errors import Refusal
from gateway.grants.admin import GrantAdmin
from gateway.grants.index import GrantIndex
from gateway.identity import IdentityIndex, Subject
from gateway.keys import KeyRing, SubjectHasher
from gateway.policy import PolicyEngine
from gateway.policy.decider import Decider
from gateway.policy.watcher import PolicyWatcher
from gateway.purposes import Taxonomy, load_taxonomy
from gateway.quota import QuotaCounter, make_counter
from gateway.routes import RouteTable, load_routes
from gateway.scenarios import Scenarios, load_scenarios
from gateway.settings import Settings
from gateway.shaping import load_masking
from gateway.shaping.profiles import MaskingPolicy
from gateway.upstream import UpstreamBreaker
from gateway.watermark.policy import WatermarkPolicy, load_watermarks
from gateway.watermark.registry import WatermarkRegistry, registry_engine
from gateway.watermark.signing import ResponseSigner
from gateway.workdays import WorkCalendar, load_calendar

if TYPE_CHECKING:
    from gateway.alerts.elastic import AlertIndexer
    from gateway.audit.shipper import ShipperProcess

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings, *, journal: Journal | None = None) -> None:
        self.settings = settings
        policies = settings.policies
        self.catalog: Catalog = load_catalog(policies / "catalog.toml")
        self.taxonomy: Taxonomy = load_taxonomy(policies / "purposes.toml")
        self.routes: RouteTable = load_routes(policies / "routes.toml", self.catalog)
        self.scenarios: Scenarios = load_scenarios(
            policies / "scenarios.toml", self.catalog, self.taxonomy
        )
        self.regulations: Regulations = load_regulations(policies / "regulations.toml")
        self.calendar: WorkCalendar = load_calendar(policies / "workdays.toml")
        self.masking: MaskingPolicy = load_masking(
            policies / "masking.toml", self.catalog, self.taxonomy
        )
        self.watermarks: WatermarkPolicy = load_watermarks(
            policies / "watermarks.toml", self.catalog, self.taxonomy
        )
        settings.home.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = make_engine(settings.state_database_url)
        create_schema(self.engine)
        self.policy = PolicyEngine.open(self.engine, policies)
        self.monitor = revision.RevisionMonitor(self.engine)
        self._refresh_lock = threading.Lock()
        with self.engine.connect() as conn:
            self.revision = revision.read(conn)
            self.identity = IdentityIndex.load(conn)
            self.grants = GrantIndex.load(conn, self.scenarios, self.revision)
        self.decider = Decider(self.policy, self.taxonomy, self.grants)
        self.quota: QuotaCounter = make_counter(settings.redis_url, settings.state_database_url)
        self.journal = journal or open_journal(settings, index_subjects=True, reserve_wal=True)
        self.in_flight = InFlight()  # the proxy's requests under way (see Pipeline)
        self.shipper = _start_shipper(settings)
        self.hasher = SubjectHasher.from_home(settings.keys_dir)
        # Master keys for pseudonyms, watermarks and response signatures, sealed at rest.
        self.keyring: KeyRing = settings.keyring()
        self.registry = WatermarkRegistry(
            registry_engine(settings.state_database_url, self.engine, settings.home)
        )
        self.signer = ResponseSigner(self.keyring)
        self.signer.publish(settings.home)
        self.upstream = UpstreamBreaker()
        self.alerts = AlertService(self.engine, self.journal, make_notifiers(settings))
        self.alert_indexer = _alert_indexer(settings, self.alerts)
        windows = RedisWindows(settings.redis_url) if settings.redis_url else None
        self.detection = DetectionEngine.from_rules_dir(
            DetectionContext(
                is_working_time=self.calendar.is_working_time, subject_hasher=self.hasher
            ),
            self.alerts.on_detection,
            windows=windows,
        )
        self.detection.start()
        self.register_decoys(self.registry.decoy_subject_hashes())
        self.admin = GrantAdmin(
            self.engine,
            self.catalog,
            self.taxonomy,
            self.scenarios,
            self.journal,
            self.announce,
            frozenset(self.masking.profiles),
        )
        self.desk = ApplicationDesk(
            self.engine,
            self.catalog,
            self.admin,
            self.regulations,
            self.calendar,
            overdue_approval=settings.overdue_approval,
            warning_days=settings.expiry_warning_days,
            quota=self.quota,
        )
        for name, (action, undo) in (
            GrantResponses(self.admin, self.desk, self.quota).actions().items()
        ):
            self.alerts.register_action(name, action, undo)
        self.watcher: PolicyWatcher | None = None
        self._background: BackgroundSweep | None = None
        self._store_error: str | None = None

    def refresh(self) -> None:
        """Pick up admin changes made since the last request; refuse while the store is down."""
        if not self.monitor.maybe_changed() and self._store_error is None:
            return
        with self._refresh_lock:
            try:
                with self.engine.connect() as conn:
                    current = revision.read(conn)
                    if current != self.revision or self._store_error is not None:
                        identity = IdentityIndex.load(conn)
                        self.policy.reload()
                        self.grants.refresh(conn, self.scenarios, current)
                        self.identity = identity
                        self.revision = current
                if self._store_error is not None:
                    log.warning("策略库已恢复 (policy store reachable again)")
                self._store_error = None
            except Exception as exc:
                self.monitor.poke()  # look again on the next request
                self._store_error = str(exc)
                log.error("策略库不可用 (policy store unavailable): %s", exc)
                raise Refusal(
                    "policy_unavailable",
                    503,
                    "策略库暂不可用，网关拒绝放行 (policy store unavailable; the gateway refuses)",
                ) from exc

    def register_decoys(self, subject_hashes: set[str]) -> None:
        """Decoy identities the watermark delivered join the honeytokens: any later look-up of
        one is an alert (they are loaded from the registry again at every start)."""
        if not subject_hashes:
            return
        for detector in self.detection.detectors:
            if isinstance(detector, Honeytoken):
                detector.add_subjects(subject_hashes)

    def authenticate(self, api_key: str, now: datetime) -> Subject | None:
        return self.identity.authenticate(api_key, now)

    def announce(self) -> None:
        """A policy change was committed: look again on the next request, and tell other gateways."""
        self.monitor.poke()
        if self.watcher is not None:
            self.watcher.notify()
        elif self.settings.redis_url:
            publisher = PolicyWatcher.publisher(
                self.settings.redis_url, self.settings.state_database_url
            )
            publisher.notify()
            publisher.close()

    def start_background(self, *, sweep_seconds: float = 60.0) -> None:
        """What a serving gateway runs besides requests: change notices and the deadline sweep."""
        if self.settings.redis_url and self.watcher is None:
            self.watcher = PolicyWatcher.subscribe(
                self.settings.redis_url, self.settings.state_database_url, self.monitor.poke
            )
            self.policy.set_watcher(self.watcher)
        if self._background is None:
            self._background = BackgroundSweep(self.desk, sweep_seconds)

    def close(self) -> None:
        if self._background is not None:
            self._background.stop()
        if self.watcher is not None:
            self.watcher.close()
        self.quota.close()
        self.detection.close()
        self.alerts.close()
        if self.alert_indexer is not None:
            self.alert_indexer.close()
        self.registry.close()
        if self.registry.engine is not self.engine:
            self.registry.engine.dispose()
        self.journal.close()
        if self.shipper is not None:
            self.shipper.close()
        self.monitor.close()
        self.engine.dispose()


def make_notifiers(settings: Settings) -> list[Notifier]:
    notifiers: list[Notifier] = []
    if settings.alert_webhook_url and settings.alert_webhook_secret:
        notifiers.append(
            WebhookNotifier(
                settings.alert_webhook_url,
                settings.alert_webhook_secret.encode(),
                settings.alert_webhook_min_severity,
            )
        )
    if settings.alert_syslog:
        notifiers.append(SyslogNotifier(settings.alert_syslog, settings.alert_syslog_min_severity))
    return notifiers


class BackgroundSweep:
    """Runs the application desk's sweep (deadlines, expiry warnings) on a timer, in a thread."""

    def __init__(self, desk: ApplicationDesk, seconds: float) -> None:
        self.desk = desk
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deadline-sweep", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                report = self.desk.sweep()
            except Exception:
                log.exception("期限检查失败 (deadline sweep failed)")
                continue
            if report.deemed_approved or report.overdue or report.expiry_warnings:
                log.info("期限检查 (deadline sweep): %s", report.to_dict())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _alert_indexer(settings: Settings, alerts: AlertService) -> AlertIndexer | None:
    """With Elasticsearch configured, every alert is also copied there (for Kibana)."""
    if not settings.elasticsearch_url:
        return None
    from gateway.alerts.elastic import AlertIndexer
    from gateway.audit.elastic import client_from_settings

    indexer = AlertIndexer(client_from_settings(settings), alerts.store)
    alerts.store.listeners.append(indexer.changed)
    return indexer


def _start_shipper(settings: Settings) -> ShipperProcess | None:
    """The Elasticsearch shipper, a process of its own, when an Elasticsearch URL is set."""
    if not settings.elasticsearch_url:
        return None
    from gateway.audit.shipper import ShipperProcess

    return ShipperProcess(settings)
