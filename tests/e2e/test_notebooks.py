"""The notebooks run top to bottom against a small synthetic study's warehouse, read-only."""

from __future__ import annotations

import hashlib

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline.config import PROJ_ROOT

NOTEBOOKS = sorted((PROJ_ROOT / "notebooks").glob("*.ipynb"))
#: Cells run after a notebook's own, asserting what it must have shown (a failed assert is
#: an error output, which the test refuses).
CHECKS = {
    # one row per fidelity indicator, and every cell a value or the reason there is none
    # (it was a pivot_table(dropna=False) of 88 rows, mostly NaN)
    "fidelity": ["assert table.shape[0] == od.indicator.nunique() == 11, table.shape\n"
                 "assert table.notna().all().all()"],
    # a funnel per binary fidelity indicator and outcome and relapse from Aalen-Johansen,
    # every flag in words; the Kaplan-Meier funnel's effective n no more than the people
    "site_comparison": ["assert set(fu.kind) <= {'binomial', 'mean', 'time_to_event'}\n"
                        "assert set(fu.assessment) <= {'better', 'worse', 'within', "
                        "'suppressed', 'not drawn'}\n"
                        "n = od.groupby('site_id').size()\n"
                        "assert (fr_km.table.set_index('label').denominator <= n + 1e-9).all()"],
    # an estimand per outcome, the missing-data table, relapse's sensitivity analyses
    "outcomes": ["assert len(res.plan.estimands()) == len(res.plan.outcomes)\n"
                 "assert set(res.public['missing_data'].outcome) >= {'relapse'}\n"
                 "assert rows.analysis.str.startswith('sensitivity').sum() >= 4, rows"],
    # polars without pandas, the dictionary of every table the analyses read, the factor
    "derived_tables": ["assert isinstance(tte, pl.DataFrame)\n"
                       "assert set(derive.OUTPUTS) <= set(dictionary.table)\n"
                       "assert any(t.startswith('diagnosis_group[T.') for t in fit.summary.index)"],
}


def test_the_three_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"outcomes", "site_comparison", "fidelity"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_against_the_warehouse_without_changing_it(path, study, monkeypatch, tmp_path):
    before = hashlib.sha256(study.warehouse.read_bytes()).hexdigest()
    monkeypatch.setenv("ODEVAL_WAREHOUSE", str(study.warehouse))
    # power.ipynb: few simulated trials, one process, replicates cached in a temporary folder
    monkeypatch.setenv("ODEVAL_POWER_REPS", "20")
    monkeypatch.setenv("ODEVAL_POWER_PROCESSES", "1")
    monkeypatch.setenv("ODEVAL_POWER_CACHE", str(tmp_path / "power_cache"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own (inline) backend
    nb = nbformat.read(path, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(check) for check in CHECKS.get(path.stem, [])]
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") in ("execute_result", "display_data") for o in outputs)
    assert hashlib.sha256(study.warehouse.read_bytes()).hexdigest() == before
    # every cell that draws shows its figure (pipeline's style once switched interactive
    # mode off after the first figure, and figures were silently not shown)
    code = [c for c in nb.cells if c.cell_type == "code"]
    drawing = [c for c in code if any(f"{name}(" in c.source for name in
                                      ("plot_kaplan_meier", "plot_cumulative_incidence",
                                       "plot_forest", "plot_funnel", "plot_power_curve"))]
    shown = [c for c in drawing if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(shown) == len(drawing)
    assert "from pipeline" in "".join(c.source for c in nb.cells if c.cell_type == "code")
