"""The application desk: submit, approve (creating a grant), refuse citing a legal basis, and the deadline sweep.

A deadline is the `working_days`-th working day after the day of submission (China time), on
the holiday calendar; the answer is due by the end of that day. The sweep, run by every gateway
once a minute and by `shareguard applications sweep`, deals with what time has made due: overdue
applications (deemed approved where the deployment says so, otherwise reported once) and grants
about to expire (warned once, ahead of time).

A re-approval (an alert's `require_reapproval`) names the grant it re-approves: while pending its
`grant_id` is that grant. Approving it re-issues that grant (role, quotas, masking profile
included; the approver may only narrow), and it is never deemed approved: it needs a person.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from gateway.applications import store
from gateway.applications.model import MAX_TEXT, MIN_LEGAL_BASIS, Application, ApplicationSpec
from gateway.applications.regulations import KIND_NAMES, Regulations
from gateway.catalog import Catalog
from gateway.grants import store as grant_store
from gateway.grants.admin import SYSTEM, Actor, GrantAdmin
from gateway.grants.model import Grant, GrantError, GrantSpec
from gateway.identity import load_principal
from gateway.quota import QuotaCounter, QuotaUnavailable
from gateway.workdays import CHINA, WorkCalendar, china_today

log = logging.getLogger(__name__)
OVERDUE_ACTOR = Actor("system:overdue-approval", ("system",))


class ApplicationError(ValueError):
    """An application that cannot be submitted or answered; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("申请有误 (application invalid):\n  " + "\n  ".join(problems))
        self.problems = problems


class ApplicationNotFound(LookupError):
    pass


@dataclass(slots=True)
class SweepReport:
    deemed_approved: list[dict[str, Any]] = field(default_factory=list)
    overdue: list[dict[str, Any]] = field(default_factory=list)
    expiry_warnings: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deemed_approved": self.deemed_approved,
            "overdue": self.overdue,
            "expiry_warnings": self.expiry_warnings,
            "failures": self.failures,
        }


class ApplicationDesk:
    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        grants: GrantAdmin,
        regulations: Regulations,
        calendar: WorkCalendar,
        *,
        overdue_approval: bool,
        warning_days: int,
        quota: QuotaCounter | None = None,
    ) -> None:
        self.engine = engine
        self.quota = quota  # the daily counters: a re-issued grant inherits today's usage
        self.catalog = catalog
        self.grants = grants
        self.regulations = regulations
        self.calendar = calendar
        self.overdue_approval = overdue_approval
        self.warning_days = warning_days

    # -- submitting -------------------------------------------------------------------------

    def submit(
        self,
        actor: Actor,
        spec: ApplicationSpec,
        now: datetime | None = None,
        *,
        replaces: str | None = None,
    ) -> Application:
        """Record an application; `replaces`: the grant a re-approval is for."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            app = self._new_application(conn, spec, now)
            store.insert_application(conn, app)
            if replaces is not None:
                old = grant_store.get_grant(conn, replaces, self.grants.scenarios)
                if old is None or old.dataset != app.dataset:
                    raise ApplicationError([f"没有可重新审批的授权 {replaces} (no such grant)"])
                conn.execute(
                    store.applications_table.update()
                    .where(store.applications_table.c.id == app.id)
                    .values(grant_id=replaces)
                )
                app = replace(app, grant_id=replaces)
            self.grants.audit(actor, "application-submit", app.id, None, app.to_dict())
        return app

    def _new_application(
        self, conn: Connection, spec: ApplicationSpec, now: datetime
    ) -> Application:
        problems: list[str] = []
        principal = load_principal(conn, spec.applicant)
        dataset = self.catalog.get(spec.dataset)
        if spec.kind not in KIND_NAMES:
            raise ApplicationError(
                [f"申请类别应为 share 或 open (kind must be share or open): {spec.kind!r}"]
            )
        if principal is None:
            raise ApplicationError([f"未知申请人 {spec.applicant!r} (unknown applicant)"])
        if dataset is None:
            raise ApplicationError([f"未知数据集 {spec.dataset!r} (unknown dataset)"])
        wanted_kind = "department" if spec.kind == "share" else "public"
        if principal.kind != wanted_kind:
            problems.append(
                f"{KIND_NAMES[spec.kind]}的申请人须为 {wanted_kind} 类主体，{principal.id} 是 "
                f"{principal.kind} (the applicant must be a {wanted_kind} principal)"
            )
        if spec.kind == "share" and dataset.share != "conditional":
            problems.append(
                {
                    "unconditional": f"{dataset.id} 为无条件共享数据，依职责直接获取，无需申请 "
                    "(unconditional: no application needed)",
                    "none": f"{dataset.id} 为不予共享数据，不受理申请 (never shared): "
                    f"{dataset.legal_basis}",
                }.get(dataset.share, f"share type {dataset.share}")
            )
        if spec.kind == "open" and dataset.open != "on_application":
            problems.append(
                {
                    "open": f"{dataset.id} 为无条件开放数据，无需申请 (open data: no application needed)",
                    "closed": f"{dataset.id} 为不予开放数据，不受理开放申请 (never opened)",
                }.get(dataset.open, f"open type {dataset.open}")
            )
        if not spec.reason.strip():
            problems.append("须说明申请理由与应用场景 (state the reason and the use)")
        if spec.kind == "open" and not spec.security_measures.strip():
            problems.append("依申请开放须说明安全保障措施 (state the security measures)")
        if len(spec.reason) > MAX_TEXT or len(spec.security_measures) > MAX_TEXT:
            problems.append(f"说明最长 {MAX_TEXT} 字 (text too long)")
        try:
            regulation = self.regulations.for_kind(spec.kind, spec.regulation)
        except ValueError as exc:
            problems.append(str(exc))
            regulation = None
        try:
            checked = self.grants.checker(conn).check(
                self._grant_spec(spec, principal.department), now
            )
        except GrantError as exc:
            problems += exc.problems
        if problems or regulation is None:
            raise ApplicationError(problems)
        day = china_today(now)
        deadline = self.calendar.add_working_days(day, regulation.working_days)
        return Application(
            id=store.new_application_id(),
            kind=spec.kind,
            applicant=principal.id,
            department=principal.department,
            dataset=dataset.id,
            fields=checked.fields,
            purposes=checked.purposes,
            scenario=spec.scenario,
            valid_from=spec.valid_from,
            valid_until=spec.valid_until,
            reason=spec.reason.strip(),
            security_measures=spec.security_measures.strip(),
            regulation=regulation.code,
            working_days=regulation.working_days,
            submitted_at=now,
            deadline=deadline,
            deadline_estimated=self.calendar.estimated(day, deadline),
        )

    @staticmethod
    def _grant_spec(spec: ApplicationSpec | Application, department: str | None) -> GrantSpec:
        """The grant an approval creates: to the department (sharing) or to the person (opening)."""
        return GrantSpec(
            dataset=spec.dataset,
            fields=spec.fields,
            valid_from=spec.valid_from,
            valid_until=spec.valid_until,
            department=department if spec.kind == "share" else None,
            principal=spec.applicant if spec.kind == "open" else None,
            purposes=spec.purposes,
            scenario=spec.scenario,
        )

    # -- answering --------------------------------------------------------------------------

    def approve(
        self,
        actor: Actor,
        app_id: str,
        now: datetime | None = None,
        *,
        fields: tuple[str, ...] | None = None,
        valid_until: datetime | None = None,
        max_per_request: int | None = None,
        max_per_day: int | None = None,
        masking_profile: str | None = None,
        note: str = "",
    ) -> tuple[Application, Grant]:
        """Approve, creating the grant; the provider may narrow the fields and shorten the period."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            app = self._pending(conn, app_id)
            problems = []
            if fields is not None and not set(fields) <= set(app.fields):
                extra = sorted(set(fields) - set(app.fields))
                problems.append(
                    f"批准的字段不能超出申请的字段：{', '.join(extra)} (cannot grant fields not applied for)"
                )
            if valid_until is not None and valid_until > app.valid_until:
                problems.append("批准的有效期不能长于申请的期限 (cannot grant a longer period)")
            if problems:
                raise ApplicationError(problems)
            base = self._grant_spec(app, app.department)
            old = self._reapproved(conn, app)
            if old is not None:
                # A re-approval re-issues the grant it is for: its role, quotas and masking
                # profile stay unless the approver narrows them (never a department-wide grant
                # with no quota and the purpose's default profile).
                base = old.to_spec(valid_from=app.valid_from, valid_until=app.valid_until)
                max_per_request = _tighter(max_per_request, old.max_per_request)
                max_per_day = _tighter(max_per_day, old.max_per_day)
                if masking_profile not in (None, old.masking_profile):
                    # Profiles are not ranked: any other one could show more than the old.
                    raise ApplicationError(
                        [
                            f"重新批准沿用原授权的脱敏规则 {old.masking_profile}，不能更换"
                            " (a re-approval keeps the grant's masking profile)"
                        ]
                    )
                masking_profile = old.masking_profile
            spec = replace(
                base,
                fields=fields or base.fields,
                valid_until=valid_until or app.valid_until,
                max_per_request=max_per_request,
                max_per_day=max_per_day,
                masking_profile=masking_profile,
                application_id=app.id,
                note=note,
            )
            if old is not None:
                # Re-issued: the suspended grant it replaces must never come back beside it (an
                # alert's revert resumes what it suspended). Revoked in the same transaction as
                # the new grant is made: both, or neither.
                self.grants.set_status_in(
                    conn, actor, old.id, "revoked", f"由申请 {app.id} 重新批准的授权替代", now
                )
            created = self.grants.create_in(conn, actor, spec, now, application_id=app.id)
            if old is not None and self.quota is not None:
                # What the caller took today under the old grant counts under the new one; the
                # approval is refused (nothing saved) if the counters cannot be reached.
                try:
                    self.quota.carry(old.id, created.grant.id, china_today(now))
                except QuotaUnavailable as exc:
                    raise ApplicationError(
                        [f"配额计数不可用，未重新批准 (quota counters unavailable): {exc}"]
                    ) from exc
            after = store.record_answer(
                conn,
                app,
                status="approved",
                decided_by=actor.id,
                now=now,
                note=note,
                grant_id=created.grant.id,
            )
            self.grants.audit(actor, "application-approve", app.id, app.to_dict(), after.to_dict())
        self.grants.announce()
        return after, created.grant

    def refuse(
        self,
        actor: Actor,
        app_id: str,
        legal_basis: str,
        now: datetime | None = None,
        note: str = "",
    ) -> Application:
        now = now or datetime.now(UTC)
        basis = legal_basis.strip()
        if len(basis) < MIN_LEGAL_BASIS:
            raise ApplicationError(
                [
                    "拒绝须注明法律依据（法规名称与条款）(a refusal must cite its legal basis: law and article)"
                ]
            )
        if len(basis) > MAX_TEXT:
            raise ApplicationError([f"法律依据最长 {MAX_TEXT} 字 (legal basis too long)"])
        with self.engine.begin() as conn:
            app = self._pending(conn, app_id)
            after = store.record_answer(
                conn,
                app,
                status="refused",
                decided_by=actor.id,
                now=now,
                legal_basis=basis,
                note=note,
            )
            self.grants.audit(actor, "application-refuse", app.id, app.to_dict(), after.to_dict())
        return after

    def withdraw(self, actor: Actor, app_id: str, now: datetime | None = None) -> Application:
        now = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            app = self._pending(conn, app_id)
            after = store.record_answer(conn, app, status="withdrawn", decided_by=actor.id, now=now)
            self.grants.audit(actor, "application-withdraw", app.id, app.to_dict(), after.to_dict())
        return after

    def _reapproved(self, conn: Connection, app: Application) -> Grant | None:
        """The grant a pending re-approval is for, or None for an ordinary application."""
        if app.status != "pending" or app.grant_id is None:
            return None
        old = grant_store.get_grant(conn, app.grant_id, self.grants.scenarios)
        if old is None:
            raise ApplicationError([f"重新审批的授权 {app.grant_id} 不存在 (grant missing)"])
        if old.status != "suspended":
            # Revoked meanwhile, or resumed by hand: there is nothing left to re-approve.
            raise ApplicationError(
                [
                    f"重新审批的授权 {old.id} 已不在暂停状态（{old.status}），无从重新批准；"
                    f"请撤回此申请 (grant {old.id} is {old.status}, no longer suspended: withdraw"
                    " this re-approval)"
                ]
            )
        return old

    def _pending(self, conn: Connection, app_id: str) -> Application:
        app = store.get_application(conn, app_id, lock=True)
        if app is None:
            raise ApplicationNotFound(f"没有申请 {app_id} (no such application)")
        if app.status != "pending":
            raise ApplicationError(
                [f"申请 {app.id} 已处理（{app.status}），不能再次答复 (already answered)"]
            )
        return app

    # -- time -------------------------------------------------------------------------------

    def sweep(self, now: datetime | None = None) -> SweepReport:
        """Deal with what is due at `now`: overdue applications and grants about to expire."""
        now = now or datetime.now(UTC)
        report = SweepReport()
        today = china_today(now)
        with self.engine.connect() as conn:
            overdue = store.overdue_pending(conn, today, deemable=self.overdue_approval)
        for app in overdue:
            if app.grant_id is not None:
                # A re-approval after an alert: time alone never restores the access.
                self._note_overdue(
                    app, now, report, problem="重新审批须由人答复 (a re-approval needs a person)"
                )
            elif self.overdue_approval:
                self._deem_approved(app, now, report)
            else:
                self._note_overdue(app, now, report)
        self._warn_expiring(now, report)
        return report

    def _deem_approved(self, app: Application, now: datetime, report: SweepReport) -> None:
        note = (
            f"逾期未答复，视为同意：答复期限 {app.deadline.isoformat()} "
            f"(deemed approved: unanswered past the deadline)"
        )
        try:
            with self.engine.begin() as conn:
                current = store.get_application(conn, app.id, lock=True)
                if current is None or current.status != "pending" or current.grant_id:
                    return  # answered meanwhile, or a re-approval (never deemed approved)
                spec = replace(
                    self._grant_spec(current, current.department), application_id=app.id, note=note
                )
                created = self.grants.create_in(
                    conn, OVERDUE_ACTOR, spec, now, application_id=app.id
                )
                after = store.record_answer(
                    conn,
                    current,
                    status="deemed_approved",
                    decided_by=OVERDUE_ACTOR.id,
                    now=now,
                    note=note,
                    grant_id=created.grant.id,
                )
                self.grants.audit(
                    OVERDUE_ACTOR,
                    "application-deemed-approved",
                    app.id,
                    current.to_dict(),
                    after.to_dict(),
                )
        except (ApplicationError, GrantError) as exc:
            # The application can no longer become a grant (its period ended, the catalog
            # changed): report it once and leave it for a person to answer.
            report.failures.append(f"{app.id}: {exc}")
            self._note_overdue(app, now, report, problem=str(exc))
            return
        self.grants.announce()
        report.deemed_approved.append({"application": app.id, "grant": created.grant.id})

    def _note_overdue(
        self, app: Application, now: datetime, report: SweepReport, problem: str | None = None
    ) -> None:
        with self.engine.begin() as conn:
            if not store.claim_overdue_note(conn, app.id, now):
                return  # reported already, by another gateway's sweep
            self.grants.audit(
                SYSTEM,
                "application-overdue",
                app.id,
                None,
                app.to_dict(china_today(now)),
                deadline=app.deadline.isoformat(),
                problem=problem,
            )
        report.overdue.append({"application": app.id, "deadline": app.deadline.isoformat()})

    def warning_horizon(self, now: datetime, days: int | None = None) -> datetime:
        """The end of the working day `days` working days from today: warn of grants ending by then."""
        last = self.calendar.add_working_days(
            china_today(now), self.warning_days if days is None else days
        )
        return datetime.combine(last + timedelta(days=1), time(0), CHINA).astimezone(UTC)

    def expiring(self, now: datetime | None = None, days: int | None = None) -> list[Grant]:
        now = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            return grant_store.expiring(
                conn, self.grants.scenarios, now=now, before=self.warning_horizon(now, days)
            )

    def _warn_expiring(self, now: datetime, report: SweepReport) -> None:
        with self.engine.begin() as conn:
            due = grant_store.expiring(
                conn,
                self.grants.scenarios,
                now=now,
                before=self.warning_horizon(now),
                unwarned=True,
            )
            for grant in due:
                if not grant_store.claim_warning(conn, grant.id, now):
                    continue  # another gateway's sweep warned first
                last_day = china_today(grant.valid_until - timedelta(microseconds=1))
                left = self.calendar.working_days_between(china_today(now), last_day)
                self.grants.audit(
                    SYSTEM,
                    "grant-expiry-warning",
                    grant.id,
                    None,
                    grant.to_dict(),
                    grantee=grant.grantee,
                    working_days_left=left,
                )
                report.expiry_warnings.append(
                    {
                        "grant": grant.id,
                        "valid_until": grant.to_dict()["valid_until"],
                        "working_days_left": left,
                    }
                )

    # -- reading ----------------------------------------------------------------------------

    def get(self, app_id: str) -> Application | None:
        with self.engine.connect() as conn:
            return store.get_application(conn, app_id)

    def list(self, **filters: Any) -> list[Application]:
        with self.engine.connect() as conn:
            return store.list_applications(conn, **filters)


def _tighter(asked: int | None, held: int | None) -> int | None:
    """The lower of two quotas, None meaning no limit."""
    if asked is None or held is None:
        return held if asked is None else asked
    return min(asked, held)
