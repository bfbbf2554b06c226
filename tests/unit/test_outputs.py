"""The output-writing module (pipeline/outputs.py): a command replaces only what it wrote,
never deletes what it did not write, refuses folders that are not odeval's or hold another
study's outputs, and a failure (a refusing check, a name too long) changes nothing."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import OdevalError
from pipeline.outputs import MANIFEST, check_path, default_folder, owned, publish

WH_A, WH_B = "warehouse:/data/a.duckdb", "warehouse:/data/b.duckdb"


def _write(stage, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = stage / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _tree(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def test_a_command_replaces_its_own_outputs_and_keeps_everything_else(tmp_path):
    out = tmp_path / "reports"
    with publish(out, "report", source=WH_A) as st:
        _write(st, {"report.html": "v1", "tables/a.csv": "x", "tables/old.csv": "gone later"})
    with publish(out, "metrics", source=WH_A) as st:
        _write(st, {"metrics/m.csv": "m"})
    (out / "notes.txt").write_text("an analyst's notes")
    with publish(out, "report", source=WH_A) as st:
        _write(st, {"report.html": "v2", "tables/a.csv": "y"})
    assert _tree(out) == {"metrics/m.csv": "m", "notes.txt": "an analyst's notes",
                          "report.html": "v2", "tables/a.csv": "y"}
    assert owned(out)["report"]["entries"] == ["report.html", "tables"]
    assert owned(out)["metrics"] == {"entries": ["metrics"], "source": WH_A}
    assert not [p for p in out.iterdir() if p.name.startswith(".odeval-") and p.name != MANIFEST]


def test_a_folder_that_is_not_odevals_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    (out / ".gitkeep").write_text("")
    with pytest.raises(OdevalError) as info, publish(out, "pool", source="pool") as st:
        _write(st, {"report.html": "pooled"})
    assert info.value.rule == "output.foreign" and "notes.txt" in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == [".gitkeep", "notes.txt"]
    # hidden files alone do not make a folder foreign (reports/.gitkeep)
    (out / "notes.txt").unlink()
    with publish(out, "pool", source="pool") as st:
        _write(st, {"report.html": "pooled"})
    assert (out / "report.html").read_text() == "pooled"


def test_an_output_folder_of_its_own_inside_does_not_make_the_folder_foreign(tmp_path):
    # `odeval import mhsds` writes reports/import/ (its own manifest) before any run has
    # written reports/: the run's outputs then go beside it, and a plain folder still refuses
    out = tmp_path / "reports"
    with publish(out / "import", "import", source="import") as st:
        _write(st, {"import_report.html": "imp"})
    with publish(out, "validate", source=WH_A) as st:
        _write(st, {"data_quality.html": "dq"})
    assert _tree(out) == {"import/import_report.html": "imp", "data_quality.html": "dq"}
    (tmp_path / "other" / "sub").mkdir(parents=True)
    with pytest.raises(OdevalError) as info, publish(tmp_path / "other", "validate",
                                                     source=WH_A) as st:
        _write(st, {"data_quality.html": "dq"})
    assert info.value.rule == "output.foreign" and "sub" in str(info.value)


def test_an_entry_of_another_command_or_a_foreign_file_is_never_overwritten(tmp_path):
    out = tmp_path / "o"
    with publish(out, "validate", source=WH_A) as st:
        _write(st, {"data_quality.html": "dq"})
    with pytest.raises(OdevalError) as info, publish(out, "report", source=WH_A) as st:
        _write(st, {"data_quality.html": "not mine", "report.html": "r"})
    assert info.value.rule == "output.taken"
    (out / "report.html").write_text("someone's file")
    with pytest.raises(OdevalError) as info, publish(out, "report", source=WH_A) as st:
        _write(st, {"report.html": "r"})
    assert info.value.rule == "output.foreign"
    assert _tree(out) == {"data_quality.html": "dq", "report.html": "someone's file"}


def test_outputs_of_another_warehouse_are_not_mixed_into_a_folder(tmp_path):
    out = tmp_path / "o"
    with publish(out, "validate", source=WH_A) as st:
        _write(st, {"data_quality.html": "a"})
    with pytest.raises(OdevalError) as info, publish(out, "report", source=WH_B) as st:
        _write(st, {"report.html": "b"})
    assert info.value.rule == "output.other_study" and "/data/a.duckdb" in str(info.value)
    with publish(out, "bench", source="bench") as st:  # another kind of output may sit beside
        _write(st, {"bench/pilot.json": "{}"})
    assert _tree(out) == {"data_quality.html": "a", "bench/pilot.json": "{}"}


def test_a_refusing_check_or_an_error_while_writing_changes_nothing(tmp_path):
    out = tmp_path / "o"
    with publish(out, "report", source=WH_A) as st:
        _write(st, {"report.html": "good"})
    before = _tree(out), json.loads((out / MANIFEST).read_text())

    def refuse(staged):
        assert (staged / "report.html").read_text() == "bad"  # the hook sees the new files
        raise OdevalError("disclosure control failed", rule="report.disclosure")

    with pytest.raises(OdevalError, match="disclosure"), \
            publish(out, "report", source=WH_A, check=refuse) as st:
        _write(st, {"report.html": "bad"})
    with pytest.raises(OdevalError) as info, publish(out, "report", source=WH_A) as st:
        _write(st, {"report.html": "half"})
        raise OSError(28, "No space left on device")
    assert info.value.rule == "output.write"
    assert (_tree(out), json.loads((out / MANIFEST).read_text())) == before
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "report.html"]


def test_a_failed_first_publish_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new" / "reports"
    with pytest.raises(OdevalError), publish(out, "pool", source="pool",
                                             check=lambda s: (_ for _ in ()).throw(
                                                 OdevalError("no", rule="x"))) as st:
        _write(st, {"report.html": "r"})
    assert not (tmp_path / "new").exists()


def test_a_name_too_long_for_the_file_system_is_a_one_line_error(tmp_path):
    with pytest.raises(OdevalError) as info:
        check_path(tmp_path / ("b" * 300))
    assert info.value.rule == "output.path" and "300 bytes" in str(info.value)
    (tmp_path / "afile").write_text("")
    with pytest.raises(OdevalError, match="is a file, not a folder"):
        check_path(tmp_path / "afile" / "out")


def test_default_folder_is_beside_the_warehouse(tmp_path):
    default = tmp_path / "proj" / "data" / "warehouse.duckdb"
    reports = tmp_path / "proj" / "reports"
    assert default_folder(default, default, reports) == reports
    assert default_folder(tmp_path / "x" / "trial.duckdb", default, reports) == \
        tmp_path / "x" / "trial_reports"
