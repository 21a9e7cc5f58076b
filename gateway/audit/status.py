"""The state of the audit log at a glance: journal head, segments, checkpoints, shipping backlog."""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.audit.integrity import segments
from gateway.audit.journal import Journal, base_of, connect, head, read_meta
from gateway.audit.shipper import backlog
from gateway.settings import Settings


def audit_status(settings: Settings, journal: Journal | None = None) -> dict[str, Any]:
    """For `shareguard audit status`, the console's overview and `/api/admin/status`."""
    path = settings.journal_path
    info: dict[str, Any] = {
        "path": str(path),
        "last_seq": 0,
        "base_seq": 0,
        "live_records": 0,
        "segments": len(segments(path)),
        "last_checkpoint": None,
    }
    if path.exists():
        conn = connect(path, readonly=True)
        try:
            base_seq, _ = base_of(read_meta(conn))
            last, _ = head(conn)
            info.update(base_seq=base_seq, last_seq=last, live_records=last - base_seq)
            row = conn.execute(
                "SELECT seq, signed_at, key_id FROM checkpoints ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if row:
                info["last_checkpoint"] = {"seq": row[0], "signed_at": row[1], "key_id": row[2]}
        except sqlite3.OperationalError:
            pass
        finally:
            conn.close()
    if journal is not None:
        info.update(
            written=journal.written,
            batches=journal.batches,
            # Of those, commits a lone request made on the event loop, and times a slow one sent
            # every event back to the writer thread for a while (a disk that stalls).
            inline_commits=journal.inline_commits,
            inline_pauses=journal.inline_pauses,
            backlog=journal.backlog(),  # events waiting for the writer thread, not for Elasticsearch
            failed=journal.failed,
            last_error=journal.last_error,
        )
    return {"journal": info, "shipping": backlog(settings).to_json()}
