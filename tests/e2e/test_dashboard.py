"""The web dashboard in headless Chromium against a live server with the embedded worker: it
loads, refuses a bad key, lists clusters and runs, shows a run's groups and scatter, exports it,
and follows a new run by polling."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import RunDataError
from tests.conftest import ADMIN_KEY, blobs, free_port, serve_uvicorn
from worker import layout_stage

pytestmark = pytest.mark.e2e

NS = "team-a"
H = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Namespace": NS}


def chromium_path() -> str | None:
    """CLUSTERD_CHROMIUM, else the system Chromium (scripts/test.sh installs it when missing)."""
    path = os.environ.get("CLUSTERD_CHROMIUM") or "/usr/bin/chromium"
    return path if os.path.exists(path) or shutil.which(path) else None


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """While cleared, a run waits at its layout stage (processing, at 90%), so the page
    can be watched following it; set, runs go through."""
    event = threading.Event()
    event.set()
    original = layout_stage.Overlapped.result

    async def gated(*args: Any, **kw: Any) -> Any:
        await asyncio.to_thread(event.wait, 30)
        return await original(*args, **kw)

    monkeypatch.setattr(layout_stage.Overlapped, "result", gated)
    return event


@pytest.fixture
def server(make_settings: Any, gate: threading.Event) -> Iterator[str]:
    with serve_uvicorn(make_settings(port=free_port())) as (url, _):
        yield url


def wait_run(c: httpx.Client, cluster_id: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        run = c.get(f"/v1/clusters/{cluster_id}/executions/{run_id}", headers=H).json()
        if run["status"] in ("completed", "failed", "canceled"):
            return dict(run)
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def seed(url: str) -> tuple[str, str]:
    """300 documents in 3 blobs, a k=3 cluster and one completed run: (cluster_id, run_id)."""
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/v1/collections", json={"collection_name": "points"}, headers=H)
        assert r.status_code == 200, r.text
        col = r.json()["collection_id"]
        X = blobs(100)
        docs = [{"document_id": f"d{i:04d}", "vectors": {"emb": x.tolist()}} for i, x in enumerate(X)]
        body = {"collection_id": col, "documents": docs}
        r = c.post(f"/v1/namespaces/{NS}/documents/upsert", json=body, headers=H)
        assert r.status_code == 200, r.text
        body = {
            "cluster_name": "dash-demo",
            "collection_ids": [col],
            "vector_config": {
                "clustering_method": "kmeans", "feature_uris": ["emb"], "algorithm_params": {"n_clusters": 3}
            },
        }
        r = c.post("/v1/clusters", json=body, headers=H)
        assert r.status_code == 200, r.text
        cluster_id = r.json()["cluster_id"]
        r = c.post(f"/v1/clusters/{cluster_id}/execute", headers=H)
        assert r.status_code == 200, r.text
        run = wait_run(c, cluster_id, r.json()["additional_data"]["run_id"])
        assert run["status"] == "completed", run
        return cluster_id, run["run_id"]


@pytest.fixture
def console_errors() -> list[str]:
    return []


@pytest.fixture
def page(server: str, console_errors: list[str]) -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium (set CLUSTERD_CHROMIUM; scripts/test.sh installs Debian's chromium)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"], headless=True)
        try:
            pg = browser.new_context(accept_downloads=True).new_page()
            pg.set_default_timeout(10_000)
            expect.set_options(timeout=10_000)  # a busy 2-core machine; polls are 2 s apart
            pg.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            yield pg
        finally:
            browser.close()


def test_static_files_are_public_and_locked_down(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        for path in ("/dashboard", "/dashboard/static/app.js", "/dashboard/static/style.css"):
            r = c.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
        r = c.get("/dashboard/")
        assert r.status_code == 307 and r.headers["location"] == "/dashboard"
        assert c.get("/dashboard/static/..%2Fmain.py").status_code == 404
        assert c.get("/dashboard/static/index.py").status_code == 404
        paths = c.get("/openapi.json").json()["paths"]
        assert not [p for p in paths if p.startswith("/dashboard")]


def test_dashboard_end_to_end(
    server: str, page: Any, gate: threading.Event, console_errors: list[str]
) -> None:
    from playwright.sync_api import expect

    cluster_id, run_id = seed(server)
    first = page.goto(f"{server}/dashboard")
    assert "script-src 'self'" in first.headers["content-security-policy"]

    # a bad key is refused with a clear message, and nothing is kept
    page.fill("#key", "not-a-key")
    page.fill("#namespace", NS)
    page.click("#connect")
    expect(page.locator("#error")).to_contain_text("API key was refused (401)")
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0

    # the real key: the clusters list
    page.fill("#key", ADMIN_KEY)
    page.click("#connect")
    row = page.locator(f"tr[data-cluster-id='{cluster_id}']")
    expect(row).to_contain_text("dash-demo")
    expect(row).to_contain_text("kmeans")
    expect(page.locator("#error")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('clusterd.dashboard.key')") == ADMIN_KEY
    assert ADMIN_KEY not in page.url

    # the cluster: its run history with status and metrics
    row.get_by_role("link", name="dash-demo").click()
    run_row = page.locator(f"tr.run[data-run-id='{run_id}']")
    expect(run_row).to_have_attribute("data-status", "completed")
    silhouette = float(run_row.locator("td[data-metric=silhouette]").inner_text())
    assert 0.5 < silhouette <= 1.0
    expect(run_row).to_contain_text("300")

    # the run: three groups of 100 with labels, and a scatter in three colours
    run_row.get_by_role("link", name=run_id).click()
    groups = page.locator("tr.group")
    expect(groups).to_have_count(3)
    assert sorted(groups.locator("td.size").all_inner_texts()) == ["100", "100", "100"]
    assert sorted(groups.locator(".label").all_inner_texts()) == ["Cluster 0", "Cluster 1", "Cluster 2"]
    expect(page.locator("#scatter svg circle.pt")).to_have_count(300)
    fills = page.evaluate(
        "() => { const n = {}; for (const c of document.querySelectorAll('#scatter circle.pt'))"
        " n[c.getAttribute('fill')] = (n[c.getAttribute('fill')] || 0) + 1; return n; }"
    )
    assert sorted(fills.values()) == [100, 100, 100], fills
    expect(page.locator("#scatter .legend span")).to_have_count(3)
    page.locator("#scatter circle.pt[data-doc='d0000']").dispatch_event("mouseover")  # blobs overlap
    expect(page.locator("#hover")).to_have_text(re.compile(r"^d0000 · Cluster \d$"))

    # export: fetched with the headers, saved as a blob
    with page.expect_download() as dl:
        page.click("#export")
    path = dl.value.path()
    lines = Path(path).read_text().splitlines()
    assert lines[0].startswith("document_id,") and len(lines) == 301
    assert dl.value.suggested_filename == f"{run_id}.csv"

    # a new run, held at its layout stage: the history shows it processing, then completed
    page.locator("#crumbs a", has_text=cluster_id).click()
    gate.clear()
    page.click("#execute")
    active = page.locator("tr.run[data-status=processing], tr.run[data-status=pending]")
    expect(active).to_have_count(1)
    # stage and fraction as the run reports them (held after the pipeline: "metrics 90%")
    progress = page.locator("tr.run[data-status=processing] .progress")
    expect(progress).to_have_text(re.compile(r"^[a-z_]+ 90%$"))
    new_id = page.locator("tr.run[data-status=processing]").get_attribute("data-run-id")
    assert new_id and new_id != run_id
    gate.set()
    expect(page.locator(f"tr.run[data-run-id='{new_id}']")).to_have_attribute("data-status", "completed")
    expect(page.locator("tr.run[data-status=completed]")).to_have_count(2)

    # a third run watched from its own page: progress while held, then its scatter
    gate.clear()
    page.click("#execute")
    page.locator("tr.run[data-status=processing] a").click()
    expect(page.locator("#run-progress")).to_contain_text("90%")
    gate.set()
    expect(page.locator("#scatter svg circle.pt")).to_have_count(300)
    expect(page.locator("#run-progress")).to_have_count(0)
    # no CSP violation, no script error; the one failed load is the bad key's 401
    assert [e for e in console_errors if "401" not in e] == [], console_errors


XSS = '<img src=x onerror="window.pwned=1">'


def test_special_runs_user_data_and_server_down(
    server: str, page: Any, monkeypatch: pytest.MonkeyPatch, console_errors: list[str]
) -> None:
    """A run without coordinates, a failed run, HTML in a label (shown as text), a server that
    cannot be reached."""
    from playwright.sync_api import expect

    cluster_id, run_id = seed(server)
    with httpx.Client(base_url=server, timeout=30) as c:
        r = c.patch(
            f"/v1/clusters/{cluster_id}/executions/{run_id}/labels", json={"labels": {"cl_0": XSS}}, headers=H
        )
        assert r.status_code == 200, r.text
        r = c.post(f"/v1/clusters/{cluster_id}/execute", json={"defer_visualization": True}, headers=H)
        assert r.status_code == 200, r.text
        deferred = wait_run(c, cluster_id, r.json()["additional_data"]["run_id"])

        async def broken(*args: Any, **kw: Any) -> Any:
            raise RunDataError(f"vectors unusable {XSS}")

        monkeypatch.setattr(layout_stage.Overlapped, "result", broken)
        r = c.post(f"/v1/clusters/{cluster_id}/execute", headers=H)
        failed = wait_run(c, cluster_id, r.json()["additional_data"]["run_id"])
        assert failed["status"] == "failed", failed

    page.goto(f"{server}/dashboard")
    page.fill("#key", ADMIN_KEY)
    page.fill("#namespace", NS)
    page.click("#connect")
    expect(page.locator("tr[data-cluster-id]")).to_have_count(1)

    page.goto(f"{server}/dashboard#/clusters/{cluster_id}/runs/{run_id}")
    expect(page.locator("tr.group .label").first).to_have_text(XSS)
    expect(page.locator("#scatter .legend")).to_contain_text(XSS)
    assert page.locator("img").count() == 0 and page.evaluate("window.pwned") is None

    page.goto(f"{server}/dashboard#/clusters/{cluster_id}/runs/{deferred['run_id']}")
    expect(page.locator("#no-visualization")).to_contain_text("defer_visualization")
    expect(page.locator("tr.group")).to_have_count(3)

    page.goto(f"{server}/dashboard#/clusters/{cluster_id}/runs/{failed['run_id']}")
    why = f"This run failed ({failed['failure_category']}): vectors unusable {XSS}"
    expect(page.locator("#run-failure")).to_contain_text(why)
    assert page.locator("img").count() == 0 and page.evaluate("window.pwned") is None
    # the only console errors are the network log of the 404 no_visualization answer
    assert [e for e in console_errors if "status of 404" not in e] == [], console_errors

    # a key revoked while signed in: the page forgets it and asks again
    page.evaluate("sessionStorage.setItem('clusterd.dashboard.key', 'revoked-key')")
    page.reload()
    expect(page.locator("#error")).to_contain_text("API key was refused (401)")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0
    page.fill("#key", ADMIN_KEY)
    page.click("#connect")
    expect(page.locator("#run-failure")).to_contain_text(why)  # back on the view it was on

    page.route("**/v1/**", lambda route: route.abort())
    page.reload()
    expect(page.locator("#error")).to_contain_text("Cannot reach the clusterd server")
