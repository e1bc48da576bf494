"""CSV export cells: nulls empty, spreadsheet formulas neutralised."""

from __future__ import annotations

import csv
import io

import pyarrow as pa

from core.exports import to_csv


def test_csv_cells_never_start_a_formula() -> None:
    table = pa.table(
        {
            "document_id": ["d1", "=cmd|' /C calc'!A0", "+1", "@sum", "-x", "plain-text"],
            "cluster_label": ['=HYPERLINK("http://x")', "ok", None, "a", "b", "c"],
            "distance_to_centroid": [0.5, -1.25, None, float("nan"), 0.0, 2.0],
        }
    )
    rows = list(csv.reader(io.StringIO(to_csv(table))))
    assert rows[0] == ["document_id", "cluster_label", "distance_to_centroid"]
    for row in rows[1:]:
        assert not any(cell.startswith(("=", "+", "@")) for cell in row[:2]), row
    assert rows[1] == ["d1", '\'=HYPERLINK("http://x")', "0.5"]
    assert rows[2][0] == "'=cmd|' /C calc'!A0" and rows[2][2] == "-1.25"  # numbers stay numbers
    assert rows[3] == ["'+1", "", ""] and rows[4][2] == "" and rows[5][0] == "'-x"
    assert rows[6] == ["plain-text", "c", "2.0"]
