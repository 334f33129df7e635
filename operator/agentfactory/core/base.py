"""The pydantic base for every resource model: camelCase on the wire, docstrings as docs.

Field docstrings become the CRD's descriptions and the generated field reference, so a
field without a docstring is a bug (a test checks every one).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

_INITIALISMS = re.compile(r"(Sha|Url|Usd|Pr|Http)(?=[A-Z]|$)")


def _to_camel(name: str) -> str:
    # Kubernetes API conventions spell initialisms in capitals (headSHA, baseURL, costUSD).
    return _INITIALISMS.sub(lambda m: m.group(1).upper(), to_camel(name))


class Model(BaseModel):
    """Spec-side model: unknown fields are errors, so a typo never passes silently."""

    model_config = ConfigDict(
        alias_generator=_to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=False,
        frozen=False,
    )


class StatusModel(Model):
    """Status-side model: written by the operator; unknown keys are ignored when read back."""

    model_config = ConfigDict(extra="ignore")
