"""Project paths, derived from the repository root (cookiecutter-data-science style).

Every default path in odeval is computed here; nothing else hard-codes a location.
"""

from __future__ import annotations

from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
SCHEMAS_DIR = PROJ_ROOT / "schemas"
DATA_DIR = PROJ_ROOT / "data"
RAW_DIR = DATA_DIR / "raw"
DEFAULT_WAREHOUSE = DATA_DIR / "warehouse.duckdb"
REPORTS_DIR = PROJ_ROOT / "reports"
PARAMS_FILE = PROJ_ROOT / "params.yaml"
SQL_DIR = Path(__file__).resolve().parent / "sql"
