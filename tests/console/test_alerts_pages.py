"""The alert pages: what a refused change says comes back on the page, whatever it contains."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.console.common import Creds


async def sign_in(client: httpx.AsyncClient, credentials: Creds, who: str) -> None:
    entry = credentials[who]
    response = await client.post(
        "/login", data={"username": entry["username"], "password": entry["password"]}
    )
    assert response.status_code == 303


@pytest.mark.parametrize(
    ("who", "path", "form", "said"),
    [
        ("security", "/alerts/{}", {"status": "closed"}, "(no such alert): AL-NOPE&error=forged#x"),
        ("admin", "/alerts/{}/revert", {}, "(nothing to revert for this alert)"),
    ],
    ids=["change", "revert"],
)
async def test_an_error_in_an_alert_redirect_is_url_encoded(
    client: httpx.AsyncClient,
    credentials: Creds,
    who: str,
    path: str,
    form: dict[str, str],
    said: str,
) -> None:
    await sign_in(client, credentials, who)
    response = await client.post(
        path.format("AL-NOPE%26error%3Dforged%23x"), data=form, follow_redirects=False
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/alerts/AL-NOPE%26error%3Dforged%23x"
    assert location.fragment == ""
    query = parse_qs(location.query)
    assert list(query) == ["error"] and len(query["error"]) == 1
    assert query["error"][0].endswith(said)
