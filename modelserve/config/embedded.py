"""Where embedded use (``modelserve.load``) and batch scoring find a ``registry:`` reference's
repository and registry: ``MODELSERVE_REPOSITORY`` and ``MODELSERVE_REGISTRY_URL``, as the CLI does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def repository_from_env(env: Mapping[str, str] | None = None) -> Path | None:
    """``MODELSERVE_REPOSITORY`` as a path, None when unset or empty."""
    value = (os.environ if env is None else env).get("MODELSERVE_REPOSITORY", "")
    return Path(value) if value else None


def registry_url_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """``MODELSERVE_REGISTRY_URL``, None when unset or empty."""
    value = (os.environ if env is None else env).get("MODELSERVE_REGISTRY_URL", "")
    return value or None
