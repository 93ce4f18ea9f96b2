"""What every run configuration shares: the field helper that declares a value's doc, range and choices,
and the one :class:`ConfigError`.

The config types live beside the code that reads them (:mod:`coordinator.trpo.config`,
:mod:`coordinator.zo.config`); :mod:`deploy.config` loads YAML and ``--set`` overrides into them and checks
every field against what it declares here, once, at the edge::

    delta: float = config_field(0.01, "KL constraint delta", range=(1e-8, 10.0))
    scheme: str = config_field("partial", "which scheme", choices=SCHEMES)

:class:`ConfigError` is :class:`protocol.errors.ConfigError` (a ``ValueError``): the protocol's settings
(link models, limits) and a run's keys fail the same way, and the command line answers both with one
line and exit code 2.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from protocol.errors import ConfigError

__all__ = ["ConfigError", "config_field"]


def config_field(default: Any, doc: str = "", **meta: Any) -> Any:
    """A dataclass field with ``metadata = {"doc": doc, **meta}``; ``meta`` may hold ``range=(lo, hi)``
    (inclusive, for numbers and for every item of a list) and ``choices=(...)`` (for a value or every item
    of a list). A list or dict default becomes a default factory."""
    metadata = {"doc": doc, **meta}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
