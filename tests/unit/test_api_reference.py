"""docs/api-reference.md and the settings table of docs/operations.md are generated from the code
(scripts/gen_api_reference.py); these tests fail when either is stale or a setting is undocumented."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import gen_api_reference as gen  # noqa: E402

FIX = f"regenerate with `{gen.REGENERATE}` and commit the result"


@pytest.fixture(scope="module")
def openapi() -> dict:
    return gen.build_openapi()


def test_api_reference_is_current(openapi: dict) -> None:
    expected = gen.render_api_reference(openapi)
    current = gen.API_REFERENCE.read_text(encoding="utf-8")
    assert current == expected, f"docs/api-reference.md is stale: {FIX}"


def test_api_reference_lists_every_operation(openapi: dict) -> None:
    text = gen.API_REFERENCE.read_text(encoding="utf-8")
    for path, ops in openapi["paths"].items():
        for method in ops:
            assert f"### `{method.upper()} {path}`" in text, f"{method.upper()} {path} missing: {FIX}"


def test_render_is_deterministic(openapi: dict) -> None:
    assert gen.render_api_reference(openapi) == gen.render_api_reference(gen.build_openapi())


def test_settings_table_is_current() -> None:
    current = gen.OPERATIONS.read_text(encoding="utf-8")
    assert gen.SETTINGS_BEGIN in current and gen.SETTINGS_END in current, "settings markers missing"
    expected = gen.splice_settings(current, gen.render_settings_table())
    assert current == expected, f"the settings table of docs/operations.md is stale: {FIX}"


def test_every_setting_is_documented() -> None:
    text = gen.OPERATIONS.read_text(encoding="utf-8")
    table = text[text.index(gen.SETTINGS_BEGIN) : text.index(gen.SETTINGS_END)]
    for name, field in Settings.model_fields.items():
        var = f"CLUSTERD_{name.upper()}"
        assert f"| `{var}` |" in table, f"{var} is not in docs/operations.md's settings table: {FIX}"
        assert field.description, f"Settings.{name} has no description (core/settings.py)"


def test_stale_file_is_detected(tmp_path: Path) -> None:
    """The splice really replaces the table: an edited row comes back as generated."""
    current = gen.OPERATIONS.read_text(encoding="utf-8")
    edited = current.replace("| `CLUSTERD_PORT` |", "| `CLUSTERD_PORTX` |")
    assert edited != current
    assert gen.splice_settings(edited, gen.render_settings_table()) == current
