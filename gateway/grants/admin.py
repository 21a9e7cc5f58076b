"""Changing grants as an admin: checked, stored with the policy revision, audited, announced.

Every change runs in one database transaction; its staff audit event (who, what, before, after)
is made durable before that transaction commits, so no change can take effect unrecorded. After
the commit the change is announced (the local revision monitor, and Redis when configured), and
every gateway applies it on its next request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from gateway.audit.journal import Journal
from gateway.audit.staff import record, staff_event
from gateway.catalog import Catalog
from gateway.grants import store
from gateway.grants.model import Grant, GrantError, GrantSpec
from gateway.grants.validate import GrantChecker
from gateway.identity import load_principal
from gateway.purposes import Taxonomy
from gateway.scenarios import Scenarios

STATUS_ACTIONS = {"suspended": "grant-suspend", "active": "grant-resume", "revoked": "grant-revoke"}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: a member of staff, the command line's OS user, or the system itself."""

    id: str
    roles: tuple[str, ...] = ()
    source_ip: str | None = None


SYSTEM = Actor("system:scheduler", ("system",))


@dataclass(frozen=True, slots=True)
class CreatedGrant:
    grant: Grant
    overlaps: list[str] = field(default_factory=list)  # how it relates to grants it overlaps

    def to_dict(self) -> dict[str, Any]:
        return {"grant": self.grant.to_dict(), "overlaps": self.overlaps}


class GrantNotFound(LookupError):
    pass


class GrantAdmin:
    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        taxonomy: Taxonomy,
        scenarios: Scenarios,
        journal: Journal,
        announce: Callable[[], None],
        profiles: frozenset[str] | None = None,
    ) -> None:
        self.engine = engine
        self.profiles = profiles
        self.catalog = catalog
        self.scenarios = scenarios
        self.journal = journal
        self.announce = announce
        self._taxonomy = taxonomy

    def checker(self, conn: Connection) -> GrantChecker:
        return GrantChecker(
            self.catalog,
            self._taxonomy,
            self.scenarios,
            lambda pid: load_principal(conn, pid),
            self.profiles,
        )

    def create(self, actor: Actor, spec: GrantSpec, now: datetime | None = None) -> CreatedGrant:
        now = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            created = self.create_in(conn, actor, spec, now)
        self.announce()
        return created

    def create_in(
        self, conn: Connection, actor: Actor, spec: GrantSpec, now: datetime, **details: Any
    ) -> CreatedGrant:
        """Create a grant inside the caller's transaction (an approval creates one this way)."""
        spec = self.checker(conn).check(spec, now)
        rev = store.claim_revision(conn)  # from here on, other admin changes wait for this one
        overlaps = self._overlaps(conn, spec)
        grant = store.insert_grant(
            conn, spec, self.scenarios, created_by=actor.id, now=now, rev=rev
        )
        self.audit(
            actor, "grant-create", grant.id, None, grant.to_dict(), overlaps=overlaps, **details
        )
        return CreatedGrant(grant, overlaps)

    def set_status(
        self,
        actor: Actor,
        grant_id: str,
        status: str,
        reason: str = "",
        now: datetime | None = None,
    ) -> Grant:
        """Suspend, resume or revoke. A revoked grant stays revoked (create a new one instead)."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            grant = store.get_grant(conn, grant_id, self.scenarios)
            if grant is not None and grant.status == status and status != "revoked":
                return grant  # nothing changed: the revision stays where it was
            after = self.set_status_in(conn, actor, grant_id, status, reason, now)
        self.announce()
        return after

    def set_status_in(
        self,
        conn: Connection,
        actor: Actor,
        grant_id: str,
        status: str,
        reason: str,
        now: datetime,
    ) -> Grant:
        """`set_status` inside the caller's transaction (an approval revokes the grant it
        re-issues this way, so that both happen or neither); the caller announces."""
        rev = store.claim_revision(conn)
        grant = store.get_grant(conn, grant_id, self.scenarios)
        if grant is None:
            raise GrantNotFound(f"没有授权 {grant_id} (no such grant)")
        if grant.status == "revoked":
            raise GrantError([f"授权 {grant_id} 已撤销，不能再变更 (a revoked grant is final)"])
        if grant.status == status:
            return grant
        if status == "active":
            self._overlaps(conn, grant.to_spec(), ignore=grant.id)
        after = store.set_status(conn, grant, status, now, rev)
        self.audit(
            actor, STATUS_ACTIONS[status], grant.id, grant.to_dict(), after.to_dict(), reason=reason
        )
        return after

    def _overlaps(self, conn: Connection, spec: GrantSpec, ignore: str | None = None) -> list[str]:
        """Refuse a grant that contradicts an active one; describe how it relates to the others."""
        covered = set(spec.purposes)
        scenario = self.scenarios.get(spec.scenario) if spec.scenario else None
        if scenario is not None:
            covered.update(scenario.purposes)
        notes: list[str] = []
        conflicts: list[str] = []
        specificity = 2 if spec.principal else 1 if spec.role else 0
        for other in store.overlapping(conn, spec, self.scenarios):
            if other.id == ignore or other.status != "active":
                continue
            same_scope = (other.department, other.role, other.principal) == (
                spec.department,
                spec.role,
                spec.principal,
            )
            if same_scope and other.covered == covered:
                conflicts.append(
                    f"与现有授权 {other.id} 冲突：被授权方、数据集、用途相同且有效期重叠；"
                    "请先撤销或暂停它，或让有效期首尾相接 (contradicts active grant "
                    f"{other.id}: same grantee, dataset and purposes over an overlapping period)"
                )
            elif not (other.covered & covered) and not self._related(other.covered, covered):
                continue  # different purposes entirely: never compete for one request
            elif specificity != other.specificity:
                winner = "本授权 (this grant)" if specificity > other.specificity else other.id
                notes.append(
                    f"与授权 {other.id}（{other.grantee}）重叠：被授权方更具体者优先，即 {winner} "
                    "(overlap: the more specific grantee wins)"
                )
            else:
                notes.append(
                    f"与授权 {other.id}（{other.grantee}）重叠：用途更接近所声明用途者优先，"
                    "其次较新生效者 (overlap: the nearer purpose wins, then the newer grant)"
                )
        if conflicts:
            raise GrantError(conflicts)
        return notes

    def _related(self, a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> bool:
        """Whether a purpose of one set is an ancestor or descendant of a purpose of the other."""
        return any(self._taxonomy.covers(x, y) or self._taxonomy.covers(y, x) for x in a for y in b)

    def audit(
        self, actor: Actor, action: str, target: str, before: Any, after: Any, **details: Any
    ) -> None:
        record(
            self.journal,
            staff_event(
                actor.id,
                actor.roles,
                action,
                target=target,
                source_ip=actor.source_ip,
                before=before,
                after=after,
                **details,
            ),
        )

    def get(self, grant_id: str) -> Grant | None:
        with self.engine.connect() as conn:
            return store.get_grant(conn, grant_id, self.scenarios)

    def list(self, **filters: Any) -> list[Grant]:
        with self.engine.connect() as conn:
            return store.list_grants(conn, self.scenarios, **filters)
