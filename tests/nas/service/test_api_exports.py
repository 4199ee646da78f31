"""Exports through the REST API: a trial of a (tiny) supernet search job becomes a bundle on the
server, downloadable as a .zip by its owner only."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import httpx
import pytest

from tests.nas.service.conftest import Server

# Exports do not touch the database beyond reading a job: the SQLite server suffices.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def test_export_and_download(
    clients: dict[str, httpx.Client], supernet_job: dict[str, Any], server: Server
) -> None:
    c, jid, trial = clients["alice"], supernet_job["id"], supernet_job["trial"]
    r = c.post(f"/api/jobs/{jid}/exports", json={"trial": trial["number"], "formats": "torch"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["job"] == jid and body["trial"] == trial["number"]
    assert body["id"].startswith(f"{trial['number']}-")
    m = body["manifest"]
    assert m["arch_id"] == trial["arch_id"]
    assert m["objectives"]["accuracy"] == pytest.approx(trial["accuracy"])
    assert (server.home / "exports" / jid / body["id"] / "manifest.json").is_file()

    r = c.get(body["download"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert f"{jid}-{body['id']}.zip" in r.headers["content-disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = zf.namelist()
    root = f"{jid}-{body['id']}/"
    assert all(n.startswith(root) for n in names)
    assert json.loads(zf.read(root + "manifest.json"))["arch_id"] == trial["arch_id"]

    # owners only; names are checked, not joined blindly into paths
    assert clients["bob"].get(body["download"]).status_code == 404
    assert clients["root"].get(body["download"]).status_code == 200
    for bad in ("..", "0-zzzzzzzzzzzz", f"{trial['number']}-000000000000"):
        r = c.get(f"/api/exports/{jid}/{bad}/download")
        assert r.status_code == 404 and "detail" in r.json()


def test_bad_exports(
    clients: dict[str, httpx.Client], supernet_job: dict[str, Any], search_job: dict[str, Any], server: Server
) -> None:
    c, jid = clients["alice"], supernet_job["id"]
    r = c.post(f"/api/jobs/{jid}/exports", json={"trial": 9999})
    assert r.status_code == 404 and "9999" in r.json()["detail"]
    r = c.post(f"/api/jobs/{jid}/exports", json={"trial": supernet_job["trial"]["number"], "formats": "gif"})
    assert r.status_code == 422 and "gif" in r.json()["detail"]
    r = c.post(f"/api/jobs/{jid}/exports", json={"trial": 0, "colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["detail"]
    r = c.post(f"/api/jobs/{jid}/exports", json={})
    assert r.status_code == 422 and "trial" in r.json()["detail"]
    # a table job has no weights to export
    r = c.post(f"/api/jobs/{search_job['id']}/exports", json={"trial": 0})
    assert r.status_code == 422 and "no weights" in r.json()["detail"]
    # failed exports leave nothing behind
    left = (
        sorted(p.name for p in (server.home / "exports" / jid).iterdir())
        if (server.home / "exports" / jid).is_dir()
        else []
    )
    assert all((server.home / "exports" / jid / n / "manifest.json").is_file() for n in left)
    assert (
        not list((server.home / "exports" / search_job["id"]).glob("*"))
        if (server.home / "exports" / search_job["id"]).is_dir()
        else True
    )
