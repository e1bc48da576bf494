"""The curl and mixpeek SDK walk-throughs of docs/quickstart.md, run as written against a live
embedded server, so the documented sequence cannot rot. A fenced block is tested when the line
before it is the TESTED marker; the key and URL placeholders are replaced by the live ones."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.e2e

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
TESTED = "<!-- tested: tests/e2e/test_docs_examples.py runs this block against a live server -->"
KEY_PLACEHOLDER = "cd_…"
URL_PLACEHOLDER = "http://127.0.0.1:8000"


def marked_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block right after a TESTED marker line."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != TESTED:
            continue
        fence = lines[i + 1]
        assert fence.startswith("```"), f"docs/quickstart.md:{i + 2}: a tested marker must precede a fence"
        end = lines.index("```", i + 2)
        blocks.append((fence[3:].strip(), "\n".join(lines[i + 2 : end]) + "\n"))
    return blocks


def block(lang: str) -> str:
    blocks = marked_blocks(QUICKSTART.read_text(encoding="utf-8"))
    found = [code for language, code in blocks if language == lang]
    assert len(found) == 1, f"expected one tested {lang} block in docs/quickstart.md, found {len(found)}"
    code = found[0]
    assert KEY_PLACEHOLDER in code and URL_PLACEHOLDER in code, "the block no longer has the placeholders"
    return code


def live(code: str, url: str) -> str:
    return code.replace(KEY_PLACEHOLDER, ADMIN_KEY).replace(URL_PLACEHOLDER, url)


def check_export(path: Path) -> None:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert len(rows) == 6, rows
    assert {r["document_id"] for r in rows} == {"a1", "a2", "a3", "b1", "b2", "b3"}
    by_group: dict[str, set[str]] = {}
    for r in rows:  # the two groups of the example are found: one cluster id per group
        by_group.setdefault(r["document_id"][0], set()).add(r["cluster_id"])
    assert all(len(ids) == 1 for ids in by_group.values()) and by_group["a"] != by_group["b"], rows
    assert {"x", "y", "cluster_label", "distance_to_centroid"} <= set(rows[0])


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("bash")), reason="needs bash and curl")
def test_quickstart_curl_block_runs(live_server: str, tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + live(block("bash"), live_server)
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert '"status":"completed","num_clusters":2' in done.stdout, done.stdout
    assert '"total_groups":2' in done.stdout, done.stdout
    check_export(tmp_path / "two-groups.csv")


def test_quickstart_sdk_block_runs(live_server: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", live(block("python"), live_server)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.startswith("completed 2 "), done.stdout
    check_export(tmp_path / "two-groups-sdk.csv")
