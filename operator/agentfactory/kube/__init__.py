"""The Kubernetes adapter: a small async client for the objects the operator owns."""

from __future__ import annotations
