"""Parameters: ``params.yaml``, one section per stage (the same file DVC tracks)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import PARAMS_FILE
from pipeline.errors import OdevalError


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read the parameters file (default: the project's ``params.yaml``)."""
    path = Path(path) if path else PARAMS_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise OdevalError("parameters file not found", rule="params.missing", file=path) from None
    except yaml.YAMLError as exc:
        raise OdevalError(f"parameters file is not valid YAML: {exc}", rule="params.yaml",
                          file=path) from None
    if not isinstance(data, dict):
        raise OdevalError("parameters file must be a mapping of sections", rule="params.yaml",
                          file=path)
    return data


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One stage's section (empty when absent)."""
    value = params.get(name) or {}
    if not isinstance(value, dict):
        raise OdevalError(f"section {name!r} must be a mapping", rule="params.section")
    return value


def merged(name: str, given: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """The ``name:`` section ``given`` over ``defaults``, refusing keys ``defaults`` lacks
    (rule ``<name>.params.unknown``, naming them and the known ones)."""
    given = given or {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise OdevalError(f"unknown {name} parameter(s) {unknown}; known: {sorted(defaults)}",
                          rule=f"{name}.params.unknown", file="params.yaml")
    return {**defaults, **given}


def params_hash(params: dict[str, Any]) -> str:
    """sha256 of the parameters in canonical JSON (sorted keys): the same for equal values."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
