"""The kopf handlers (named `controller`, not `operator`, to stay clear of the standard
library's module of that name). Handlers only gather, call the core, and apply."""

from __future__ import annotations
