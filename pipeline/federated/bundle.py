"""The bundle format, shared by both sides: file names, columns and types, the three
site contrasts, the settings recorded in a manifest, and the rounding helpers."""

from __future__ import annotations

import hashlib
import math
import platform
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import __version__
from pipeline.config import SQL_DIR
from pipeline.errors import OdevalError
from pipeline.params import merged, params_hash, section


#: Bump when a bundle's files or columns change; pooling refuses bundles of other versions.
SCHEMA_VERSION = 2

FEDERATED_SQL_DIR = SQL_DIR / "federated"

MANIFEST = "manifest.json"
RISK_SETS = "risk_sets.parquet"
SITE_EFFECTS = "site_effects.parquet"
TABLE_ONE = "table_one.parquet"
FIDELITY = "fidelity.parquet"
VALIDATION_TABLES = "validation_tables.parquet"
VALIDATION_RULES = "validation_rules.parquet"

#: Every bundle file: its columns, in order, with their Parquet (Arrow) types.
BUNDLE_SCHEMA: dict[str, dict[str, str]] = {
    RISK_SETS: {"outcome": "string", "arm": "string", "time": "int64", "n_risk": "int64",
                "n_event": "int64", "n_competing": "int64", "n_censor": "int64"},
    SITE_EFFECTS: {"outcome": "string", "measure": "string", "scale": "string",
                   "comparison": "string", "estimate": "double", "se": "double",
                   "variance": "double", "n": "int64", "n_events": "int64",
                   "method": "string", "note": "string"},
    TABLE_ONE: {"variable": "string", "kind": "string", "arm": "string", "level": "string",
                "n": "int64", "value_sum": "double", "value_sum2": "double"},
    FIDELITY: {"indicator": "string", "kind": "string", "arm": "string",
               "n_referrals": "int64", "value_sum": "double", "value_sum2": "double"},
    VALIDATION_TABLES: {"table_name": "string", "n_raw": "int64", "n_clean": "int64",
                        "n_quarantined": "int64"},
    VALIDATION_RULES: {"table_name": "string", "rule_id": "string", "n_rows": "int64"},
}

RISK_SET_COLUMNS = list(BUNDLE_SCHEMA[RISK_SETS])

#: The three site contrasts: (outcome, measure, scale of the estimate).
MEASURES = (("relapse", "log hazard ratio", "log"),
            ("involuntary_admission", "log rate ratio", "log"),
            ("return_to_work", "risk difference", "difference"))

#: Fidelity indicators of derived.fidelity_referral and their kinds (fidelity_cells.sql).
FIDELITY_KINDS = {
    "discharge_by_network": "binary",
    "p1_hours_to_first_meeting": "hours",
    "p1_within_24h": "binary",
    "p2_share_network_present": "share",
    "p3_share_home_or_choice": "share",
    "p4_first_contact_at_first_meeting": "binary",
    "p5_core_team_continuity": "share",
    "p5_peer_worker_present": "binary",
    "p5_share_two_clinical": "share",
    "p7_share_person_present": "share",
}

TABLE_ONE_KINDS = ("people", "level", "missing", "continuous", "value")

#: ``params.yaml`` ``federated:`` defaults.
DEFAULTS: dict[str, Any] = {"round_risk_sets": False, "round_counts": False}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def derive_params_hash(params: dict[str, Any]) -> str:
    """Hash of the derive parameters (merged over the derive defaults, so that an absent
    key and its default value hash alike): bundles built under different outcome
    definitions must not be pooled."""
    from pipeline.derive import resolve_params

    return params_hash(resolve_params(section(params, "derive")))


def _analyse_settings(params: dict[str, Any]) -> dict[str, Any]:
    from pipeline.analyse import resolve_params

    p = resolve_params(params.get("analyse"))
    return {k: p[k] for k in ("reference_arm", "comparison_arm", "ties", "conf_level",
                              "meta_method", "meta_test", "rate_family", "table_one",
                              "nonnormal")}


def disclosure_settings(params: dict[str, Any]) -> dict[str, Any]:
    """``params.yaml`` ``federated:`` over :data:`DEFAULTS`, with the rounding base
    (``disclosure.round_to``) and the curve step it implies: what the manifest records."""
    from pipeline import disclosure

    out = merged("federated", section(params, "federated"), DEFAULTS)
    for k in DEFAULTS:
        if not isinstance(out[k], bool):
            raise OdevalError(f"federated.{k} must be true or false, not {out[k]!r}",
                              rule="federated.params.type", file="params.yaml")
    cfg = disclosure.settings(params)
    out["round_to"] = max(int(cfg.get("round_to") or 1), 1)
    out["curve_step"] = disclosure.curve_step(cfg)
    return out


def round_half_up(n: int | float, base: int) -> int:
    """``n`` rounded to the nearest multiple of ``base``, halves up (``base`` 1: unchanged)."""
    if base <= 1:
        return int(n)
    return int(math.floor(n / base + 0.5)) * base


def rescale_moments(n: int, s: float, s2: float, n_new: int) -> tuple[float, float]:
    """Sums for ``n_new`` values with the same mean and SD (ddof 1) as ``n`` values summing
    to ``s`` with squares summing to ``s2``: what a rounded count keeps exact."""
    if n_new <= 0 or n <= 0:
        return 0.0, 0.0
    mean = s / n
    var = max((s2 - s * s / n) / (n - 1), 0.0) if n > 1 else 0.0
    return mean * n_new, (n_new - 1) * var + n_new * mean * mean



def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "odeval": __version__}
    for pkg in ("duckdb", "numpy", "pandas", "pyarrow", "scipy", "statsmodels"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "not installed"
    return out


def with_n_risk(g: pd.DataFrame) -> pd.DataFrame:
    """``n_risk`` at each time: everyone whose time is at or after it (reverse cumulative sum
    of the events, competing events and censorings within outcome and arm)."""
    g = g.sort_values(["outcome", "arm", "time"], kind="mergesort").reset_index(drop=True)
    leaving = g["n_event"] + g["n_competing"] + g["n_censor"]
    g["n_risk"] = leaving[::-1].groupby([g["outcome"][::-1], g["arm"][::-1]]).cumsum()[::-1]
    g = g[RISK_SET_COLUMNS]
    return g.astype({"time": "int64", "n_risk": "int64", "n_event": "int64",
                     "n_competing": "int64", "n_censor": "int64"})
