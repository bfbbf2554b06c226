"""The attacker (``pipeline.attack``) rebuilds counts from outputs odeval published before
issue 18, and each channel is named.

``tests/fixtures/published_before_18/`` holds the text outputs (CSV, JSON, the report
without its embedded figures) of odeval at commit afe4a17 on: ``demo`` (``odeval synth``
defaults: 1,400 people, 7 sites, then ``odeval run``), ``f400`` (``odeval synth --people
400 --sites 4 --faults 0.02``), and ``*_pooled`` (``odeval export`` of every site of each,
then ``odeval pool``). The values each test expects the attacker to pin were checked
against the warehouses of those runs (``derived.people``, ``results.metrics_*``): the
attacker rebuilds the true hidden counts, not merely some consistent value.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import attack, disclosure

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "published_before_18"
CFG = dict(disclosure.DEFAULTS)


@pytest.fixture(scope="module")
def before():
    return {run: attack.attack(FIX / run, cfg=CFG)
            for run in ("demo", "f400", "demo_pooled", "f400_pooled")}


def _one(findings, channel, cell_part):
    hits = [f for f in findings if f.channel == channel and cell_part in f.cell]
    assert hits, f"no {channel} finding on {cell_part}"
    return hits[0]


def test_exact_mean_of_days_detained_pins_the_arm_sizes(before):
    """Demo: 796 and 604 people per arm (shown 795 and 605)."""
    f = _one(before["demo"], "mean_denominator", "(site all, open_dialogue, involuntary_admission")
    assert f.detail.endswith("pinned to 796")
    f = _one(before["demo"], "mean_denominator", "(site all, usual_care, involuntary_admission")
    assert f.detail.endswith("pinned to 604")


def test_table_one_smd_with_the_arm_sizes_names_one_person_of_sex_other(before):
    """Demo: sex 'other' in the Open Dialogue arm is [c] and truly 4."""
    f = _one(before["demo"], "smd", "sex=other, open_dialogue")
    assert "shown [c]" in f.detail and f.detail.endswith("pinned to 4")
    assert _one(before["demo"], "smd", "sex=female, open_dialogue").detail.endswith("pinned to 362")


def test_fidelity_meta_regression_pins_every_sites_numerator(before):
    """Faulty 400-person study: true p1_within_24h 21/32, 27/35, 18/84, 36/57."""
    for site, (x, m) in {"S01": (21, 32), "S02": (27, 35), "S03": (18, 84), "S04": (36, 57)}.items():
        assert _one(before["f400"], "meta_regression", f"site {site}, p1_within_24h events"
                    ).detail.endswith(f"pinned to {x}")
        assert _one(before["f400"], "meta_regression", f"site {site}, p1_within_24h n"
                    ).detail.endswith(f"pinned to {m}")


def test_pooled_site_risk_difference_with_wald_interval_gives_the_arm_counts(before):
    """Pooled report of the faulty study: S01 work or education 6/16 vs 5/10, S03 18/39 vs
    4/20 (true per-arm counts), while the pooled tables show n 25, events 10."""
    f = _one(before["f400_pooled"], "effect_ci", "(S01, return_to_work) events, first arm")
    assert f.detail.endswith("pinned to 6") and "6/16 vs 5/10" in f.detail
    f = _one(before["f400_pooled"], "effect_ci", "(S03, return_to_work) n, first arm")
    assert f.detail.endswith("pinned to 39")
    assert _one(before["demo_pooled"], "effect_ci", "(S04, return_to_work) n_events"
                ).detail.endswith("pinned to 38")


def test_funnel_target_pins_the_total(before):
    """Demo: 561/796 referrals with a first meeting within 24 h (the table shows 800)."""
    f = _one(before["demo"], "funnel_target", "first_meeting_24h")
    assert "561/796" in f.detail and f.detail.endswith("pinned to 796")


def test_people_per_site_in_data_quality_json(before):
    f = _one(before["demo"], "dq_people", "(site S02, both arms)")
    assert "shown 140" in f.detail and f.detail.endswith("pinned to 138")


def test_site_estimates_shown_while_their_counts_are_hidden(before):
    """Pooled demo report: S02's rate ratio of involuntary admissions is shown while its
    events are [c]."""
    assert _one(before["demo_pooled"], "exposed", "(S02, involuntary_admission)")


def test_secondary_suppression_leaving_a_small_known_sum_is_found(tmp_path):
    """A row 20 = 3 + 2 + 15: both small cells hidden, the old rule stops there, and the
    hidden sum 5 is known."""
    cfg = CFG
    counts = {("s", "all"): 20, ("s", "a"): 3, ("s", "b"): 2, ("s", "c"): 15}
    cons = [(("s", "all"), [("s", "a"), ("s", "b"), ("s", "c")])]
    old = {("s", "a"), ("s", "b")}  # what the pre-18 rule leaves: two hidden cells per sum
    table = [{"table": "referrals", "site_id": "S1", "n_raw": 20, "n_clean": None,
              "n_quarantined": None}]
    (tmp_path / "data_quality.json").write_text(json.dumps({"sites": table, "tables": {}}))
    # same shape, as data-quality flow: rows in 5 = clean [c] + quarantined [c]
    table[0].update(n_raw=5)
    (tmp_path / "data_quality.json").write_text(json.dumps({"sites": table, "tables": {}}))
    fs = attack.attack(tmp_path, cfg=cfg)
    assert any(f.channel == "hidden_sum" and "their sum is 5" in f.detail for f in fs)
    # secondary suppression now hides 15 as well: the hidden sum is 20, not small
    assert disclosure.secondary_suppress(counts, cons, set(old)) == old | {("s", "c")}
    table[0].update(n_raw=20, n_clean=None, n_quarantined=None)
    (tmp_path / "data_quality.json").write_text(json.dumps({"sites": table, "tables": {}}))
    assert not [f for f in attack.attack(tmp_path, cfg=cfg) if f.channel == "hidden_sum"]


def test_people_rows_of_the_data_quality_json_are_read_as_rounded(tmp_path):
    """The people table's rows are rounded to 5 there (dq_report.protect): people per site
    20, [c], 20, [c], 15 against a total of 60 leave the two hidden sites' sum anywhere in
    -3..13, not 5. Read as exact, they refused the report of every such study (exact 19,
    5, 18, 4, 13: a fuzzed shape); the same numbers in an exact table are a real finding."""
    def write(table):
        sites = [{"table": table, "site_id": s, "n_raw": n, "n_clean": n, "n_quarantined": 0}
                 for s, n in (("S01", 20), ("S02", None), ("S03", 20), ("S04", None),
                              ("S05", 15))]
        (tmp_path / "data_quality.json").write_text(json.dumps({"sites": sites, "tables": {
            table: {"n_raw": 60, "n_clean": 60, "n_quarantined": 0}}}))
        return [f for f in attack.attack(tmp_path, cfg=CFG) if f.channel == "hidden_sum"]

    assert write("people") == []
    assert write("referrals")


def test_csv_and_json_formula_cells_are_found(tmp_path):
    (tmp_path / "t.csv").write_text('site_id,n\n"=HYPERLINK(""http://x"")",10\nS2,-5\n')
    (tmp_path / "d.json").write_text(json.dumps({"sites": [{"site_id": "+cmd|' /C calc'!A0"}]}))
    fs = [f for f in attack.attack(tmp_path, cfg=CFG) if f.channel == "injection"]
    assert {f.file for f in fs} == {"t.csv", "d.json"}
    assert len(fs) == 2  # -5 is a number, not a formula


def test_a_rounded_curve_at_100_percent_without_interval_is_found(tmp_path):
    (tmp_path / "metrics_outcomes.csv").write_text(
        "dimension,level,arm,outcome,metric,n,events,estimate,lower,upper,ci_method\n"
        "site,S01,usual_care,relapse,km_365d,20,10,1,,,Kaplan-Meier (Greenwood)\n")
    fs = attack.attack(tmp_path, cfg=CFG)
    assert [f.channel for f in fs] == ["curve_no_interval"]


def test_halfulp_and_domain():
    assert attack.halfulp("0.272727") == pytest.approx(5e-7)
    assert attack.halfulp("1.98345") == pytest.approx(5e-6)
    assert attack.halfulp("2.5e-05") == pytest.approx(5e-7)
    assert list(attack.domain("10", CFG)) == [8, 9, 10, 11, 12]
    assert list(attack.domain("15", CFG)) == [13, 14, 15, 16, 17]
    assert list(attack.domain("0", CFG)) == [0]
    assert list(attack.domain("[c]", CFG, upper=3)) == [0, 1, 2, 3]


def test_an_exact_count_written_in_a_note_is_found_and_a_rounded_one_is_not(tmp_path):
    (tmp_path / "analysis_estimates.csv").write_text(
        "outcome,notes\n"
        "relapse,Covariate age: 37 missing values set to the mean.\n"
        "rtw,About 35 statuses imputed. Fewer than 8 people died. 12 clusters.\n"
        "x,S1-2 rows; 0 events\n")
    (tmp_path / "d.json").write_text(json.dumps({"notes": ["1,404 people left out"]}))
    fs = [f for f in attack.attack(tmp_path, cfg=CFG) if f.channel == "note_count"]
    assert sorted((f.file, f.cell) for f in fs) == [
        ("analysis_estimates.csv", "row 2 column notes"), ("d.json", "value notes.0")]
    assert "37 is not a count the policy publishes" in fs[0].detail


def _funnel_csv(path, flags):
    """A binomial funnel table as analyse writes it: rounded counts, the target of those
    counts (0.3), exact limits; ``flags`` per site."""
    rows = [("S01", 15, 50), ("S02", 10, 70), ("S03", 55, 195), ("S04", 50, 145),
            ("S05", 30, 110), ("S06", 20, 55), ("S07", 40, 105)]
    tgt = sum(e for _, e, _ in rows) / sum(n for _, _, n in rows)
    lines = ["indicator,kind,site_id,events,n,flag,target,limits_used,phi,tau2"]
    lines += [f"p1_within_24h,binomial,{s},{e},{n},{flags.get(s, 'within')},{tgt:.6g},exact,"
              "0.9,0" for s, e, n in rows]
    (path / "analysis_funnel.csv").write_text("\n".join(lines) + "\n")


def test_a_funnel_flag_from_the_exact_counts_narrows_them(tmp_path):
    """S07 shows 40 of 105 (38.1%, inside the 95% limits around 30%); a flag high_95 can only
    come from exact counts further out: the attacker keeps only those, narrower than the
    rounding interval (the old funnel flagged from exact counts)."""
    from pipeline.stats import funnel

    _funnel_csv(tmp_path, {"S07": "high_95"})
    fs = [f for f in attack.attack(tmp_path, cfg=CFG) if f.channel == "funnel_flag"]
    assert fs and all("site S07" in f.cell for f in fs)
    ev = [f for f in fs if f.cell.endswith("events")]
    assert ev and "flagged high_95 while its published counts are within" in ev[0].detail
    # the narrowing is real: 38/105 is within the 95% limits, 42/105 above them
    fr = funnel([38, 42], [105, 105], target=0.3, labels=["a", "b"])
    assert list(fr.table["flag"]) == ["within", "high_95"]


def test_funnel_flags_of_the_published_counts_add_nothing(tmp_path):
    from pipeline.stats import funnel

    _funnel_csv(tmp_path, {})
    rows = [(15, 50), (10, 70), (55, 195), (50, 145), (30, 110), (20, 55), (40, 105)]
    fr = funnel([e for e, _ in rows], [n for _, n in rows], target=180 / 730)
    _funnel_csv(tmp_path, dict(zip(["S01", "S02", "S03", "S04", "S05", "S06", "S07"],
                                   fr.table["flag"])))
    assert [f for f in attack.attack(tmp_path, cfg=CFG) if f.channel == "funnel_flag"] == []


def test_missing_data_table_a_hidden_reason_pinned_by_its_row_is_found_and_protect_stops_it(tmp_path):
    """analysis_missing_data.csv (pipeline.analyses.sensitivity): missing 10 = not followed
    long enough 10 + died [c] (rounded counts) pins died to 1..4, narrower than the
    suppression range; the table the pipeline publishes for the same exact row (10 = 7 + 3)
    hides both reasons, and the attacker then finds nothing."""
    from pipeline.analyses.sensitivity import REASONS, protect_missing

    head = ["outcome", "arm", "people", "analysed", "missing_or_cut_short", *REASONS]
    row = ["relapse", "usual_care", "200", "200", "10", "10", "", "0", "0", "0", "0"]
    (tmp_path / "analysis_missing_data.csv").write_text(",".join(head) + "\n" + ",".join(row) + "\n")
    fs = [f for f in attack.attack(tmp_path, cfg=CFG) if f.channel == "hidden_sum"]
    assert fs and "relapse usual_care died" in fs[0].cell
    import pandas as pd

    exact = pd.DataFrame([dict(outcome="relapse", arm="usual_care", people=200, analysed=200,
                               missing_or_cut_short=10, not_long_enough=7, died=3,
                               transferred_out=0, left_service=0, reason_not_recorded=0,
                               no_record=0, difference=0.0, p=0.5, test="t", flag=False)])
    pub = protect_missing(exact, CFG)
    cells = ["" if v is None else str(v) for v in pub.iloc[0][head].tolist()]
    (tmp_path / "analysis_missing_data.csv").write_text(",".join(head) + "\n" + ",".join(cells) + "\n")
    assert not [f for f in attack.attack(tmp_path, cfg=CFG) if f.channel == "hidden_sum"]
