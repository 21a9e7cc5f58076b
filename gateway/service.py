"""The gateway's parts, loaded once from settings and kept current: what every stage consults."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway import revision
from gateway.audit.journal import Journal, open_journal
from gateway.catalog import Catalog, load_catalog
from gateway.db import create_schema, make_engine
from gateway.errors import Refusal
from gateway.identity import IdentityIndex, Subject
from gateway.keys import SubjectHasher
from gateway.policy import PolicyEngine
from gateway.purposes import Taxonomy, load_taxonomy
from gateway.routes import RouteTable, load_routes
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.audit.shipper import ShipperProcess

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings, *, journal: Journal | None = None) -> None:
        self.settings = settings
        policies = settings.policies
        self.catalog: Catalog = load_catalog(policies / "catalog.toml")
        self.taxonomy: Taxonomy = load_taxonomy(policies / "purposes.toml")
        self.routes: RouteTable = load_routes(policies / "routes.toml", self.catalog)
        settings.home.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = make_engine(settings.state_database_url)
        create_schema(self.engine)
        self.policy = PolicyEngine.open(self.engine, policies)
        self.monitor = revision.RevisionMonitor(self.engine)
        self._refresh_lock = threading.Lock()
        with self.engine.connect() as conn:
            self.revision = revision.read(conn)
            self.identity = IdentityIndex.load(conn)
        self.journal = journal or open_journal(settings, index_subjects=True)
        self.shipper = _start_shipper(settings)
        self.hasher = SubjectHasher.from_home(settings.keys_dir)
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

    def authenticate(self, api_key: str, now: datetime) -> Subject | None:
        return self.identity.authenticate(api_key, now)

    def close(self) -> None:
        self.journal.close()
        if self.shipper is not None:
            self.shipper.close()
        self.monitor.close()
        self.engine.dispose()


def _start_shipper(settings: Settings) -> ShipperProcess | None:
    """The Elasticsearch shipper, a process of its own, when an Elasticsearch URL is set."""
    if not settings.elasticsearch_url:
        return None
    from gateway.audit.shipper import ShipperProcess

    return ShipperProcess(settings)
