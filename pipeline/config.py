"""Project paths, derived from the repository root (cookiecutter-data-science style).

Every default path in odeval is computed here; nothing else hard-codes a location. The
root is the repository that holds this package, or ``$ODEVAL_PROJECT_ROOT`` when set (a
copy of the project elsewhere, e.g. an end-to-end test running ``dvc repro`` in a
temporary folder). SQL files always come from the package itself.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(os.environ.get("ODEVAL_PROJECT_ROOT") or Path(__file__).resolve().parents[1])
SCHEMAS_DIR = PROJ_ROOT / "schemas"
DATA_DIR = PROJ_ROOT / "data"
RAW_DIR = DATA_DIR / "raw"
DEFAULT_WAREHOUSE = DATA_DIR / "warehouse.duckdb"
REPORTS_DIR = PROJ_ROOT / "reports"
PARAMS_FILE = PROJ_ROOT / "params.yaml"
SQL_DIR = Path(__file__).resolve().parent / "sql"
