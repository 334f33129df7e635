"""The pure core: resource models, the pipeline state machine, policies and the scheduler.

Nothing here performs I/O or imports kopf, kubernetes, PyGithub, anthropic or an HTTP
client (an import-linter contract keeps it so). Adapters gather the world's state, call
:func:`agentfactory.core.pipeline.decide`, and perform the actions it returns.
"""

from __future__ import annotations
