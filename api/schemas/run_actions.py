"""Bodies of the run management routes (labels, name)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_LABEL = 200
MAX_RUN_NAME = 120

Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_LABEL)]


class LabelsPatch(BaseModel):
    """`{labels: {cl_id: label}}`: values trimmed, "" deletes that override; other keys are ignored."""

    model_config = ConfigDict(extra="ignore")
    labels: dict[str, Label] = Field(min_length=1)


class RunNamePatch(BaseModel):
    """`{run_name}`: trimmed; "" clears the name."""

    model_config = ConfigDict(extra="ignore")
    run_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_RUN_NAME)]
