"""Free-form request objects that get stored: checked so MongoDB can hold them (a NUL in a key or
an integer beyond 64 bits otherwise fails the write with a 500)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

from core import documents
from core.errors import ValidationFailed


def check(value: Any) -> Any:
    """The StoredDict check, for models that store their extra keys."""
    return _storable(value)


def _storable(value: Any) -> Any:
    try:
        documents.check_storable(value, "value")
    except ValidationFailed as exc:  # a ValueError becomes a 422 located at the field
        raise ValueError(exc.message) from None
    return value


def _metadata(value: Any) -> Any:
    """metadata.* is filterable by dotted path, so its keys follow the document rules."""
    try:
        documents.check_keys(value, "metadata")
    except ValidationFailed as exc:
        raise ValueError(exc.message) from None
    return value


StoredDict = Annotated[dict[str, Any], AfterValidator(_storable)]
StoredList = Annotated[list[dict[str, Any]], AfterValidator(_storable)]
Metadata = Annotated[dict[str, Any], AfterValidator(_metadata)]
