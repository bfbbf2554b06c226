"""End to end: the metrics, analyse and report stages on a small synthetic study
(tests/e2e/conftest.py): reproducible bytes, planted truth recovered, disclosure control
enforced, and the report rendering in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipeline import analyse, metrics, report
from pipeline.analyses import site_comparison
from pipeline.cli import app
from pipeline.errors import OdevalError
from pipeline.metrics import FIDELITY_LABELS
from pipeline.outputs import MANIFEST


def _rerun(study, tmp_path: Path) -> Path:
    """The metrics, analyse and report stages again, on a copy of the warehouse."""
    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(study.warehouse, wh)
    out = tmp_path / "reports"
    con = duckdb.connect(str(wh))
    try:
        metrics.run(con, study.params, out / "metrics")
        analyse.run(con, study.params)
        report.build(con, study.params, out)
    finally:
        con.close()
    return out


def test_same_inputs_and_params_give_byte_identical_tables_metrics_and_figures(study, tmp_path):
    again = _rerun(study, tmp_path)
    # the outputs, not the folder's manifest (it names the warehouse each came from)
    files = sorted(p.relative_to(study.reports) for p in study.reports.rglob("*")
                   if p.suffix in (".csv", ".json", ".svg", ".png") and "data_quality" not in p.name
                   and p.name != MANIFEST)
    assert any(f.suffix == ".csv" for f in files) and Path("metrics.json") in files
    assert sorted(p.relative_to(again) for p in again.rglob("*")
                  if p.suffix in (".csv", ".json", ".svg", ".png")
                  and "data_quality" not in p.name and p.name != MANIFEST) == files
    differ = [str(f) for f in files if (study.reports / f).read_bytes() != (again / f).read_bytes()]
    assert differ == []


def test_primary_hazard_ratio_ci_covers_the_planted_truth(study):
    # Estimand: the cause-specific hazard ratio of first relapse, open dialogue vs usual care,
    # conditional on site (Cox model stratified by site, deaths censored). The generator's
    # matching truth is `expected_site_stratified_cox_hr` (the conditional HR 0.6 slightly
    # attenuated by the cluster and person frailties the site strata do not absorb).
    truth = study.truth["outcomes"]["relapse"]["expected_site_stratified_cox_hr"]
    hr = json.loads((study.reports / "metrics.json").read_text())["primary.relapse.hazard_ratio"]
    assert hr["lower"] < truth < hr["upper"]
    assert hr["upper"] < 1  # and the study detects the planted effect
    html = (study.reports / "report.html").read_text()
    assert f"{hr['estimate']:.2f} (95% CI {hr['lower']:.2f} to {hr['upper']:.2f})" in html


def test_return_to_work_is_tested_and_reported_by_its_declared_strategy(study):
    """The estimand of return to work is the composite (a death before the window is not
    in work) with its missing statuses imputed: the secondary rows that the multiplicity
    procedure tests and section 4.4 and the summary report are the imputation's, not the
    plan's analysis of the statuses recorded (which left the missing and the dead out)."""
    con = duckdb.connect(str(study.warehouse), read_only=True)
    try:
        est = con.execute("select * from results.analysis_estimates where outcome = "
                          "'return_to_work' order by measure").df()
        mt = con.execute("select * from results.analysis_multiplicity").df()
        flow = con.execute("select sum(n) from results.analysis_flow where unit = 'people' "
                           "and stage = 'analysed:return_to_work'").fetchone()[0]
    finally:
        con.close()
    tested = est[est.analysis == "secondary"].reset_index(drop=True)
    mi = est[est.analysis == "primary (multiple imputation)"].reset_index(drop=True)
    assert len(tested) == 2 and tested["method"].str.startswith("multiple imputation").all()
    for c in ("measure", "estimate", "lower", "upper", "p", "se", "n", "df"):
        assert tested[c].tolist() == mi[c].tolist(), c
    rd = tested[tested.measure == "risk difference"].iloc[0]
    assert mt.loc[mt.outcome == "return_to_work", "p"].iloc[0] == rd.p
    assert "Multiplicity (" in rd.notes
    assert flow == rd.n   # CONSORT's analysed are the imputation's people
    html = (study.reports / "report.html").read_text()
    assert "the missing statuses multiply imputed" in html


def test_the_share_of_days_covered_counts_its_own_users(study):
    """The share of follow-up days covered is a mean over everyone followed; its 'events'
    are the people with a day covered among them (it showed the people with any use among
    those followed for the whole window: another denominator)."""
    con = duckdb.connect(str(study.warehouse), read_only=True)
    try:
        got = con.execute("select arm, n, events from results.metrics_outcomes where "
                          "metric = 'days_covered' and dimension = 'site' and level = 'all' "
                          "order by arm").fetchall()
        want = con.execute("select coalesce(arm, 'all'), count(proportion_covered), "
                           "count(*) filter (where proportion_covered > 0) from "
                           "derived.antipsychotic group by rollup (arm) order by 1").fetchall()
    finally:
        con.close()
    assert [(a, int(n), int(e)) for a, n, e in got] == [(a, n, e) for a, n, e in want]


def test_report_is_one_file_with_every_section_and_a_provenance_footer(study):
    html = (study.reports / "report.html").read_text()
    for section in ("id='plan'", "id='flow'", "id='consort'", "id='data-quality'",
                    "id='table-1'", "id='outcomes'", "id='multiplicity'", "id='subgroups'",
                    "id='sensitivity'", "id='fidelity'", "id='sites'", "id='ethnicity'"):
        assert section in html
    # the plan and the one primary result come before any other result
    assert html.index("id='plan'") < html.index("Primary result:") < html.index("id='flow'")
    assert html.index("id='summary'") < html.index("id='plan'")
    assert html.count("data:image/svg+xml;base64,") >= 6
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    con = duckdb.connect(str(study.warehouse), read_only=True)
    shas = [r[0] for r in con.execute("select sha256 from meta.loads").fetchall()]
    con.close()
    assert shas and all(s in html for s in shas)
    from pipeline.params import params_hash
    assert params_hash(study.params) in html
    assert "Not measurable from records" in html  # principle 6 is shown, not faked
    # every funnel drawn or named with why (in this small study most sites' relapse curve
    # points are hidden, so relapse by day 365 is named)
    for name in ("p1_within_24h", "p7_share_person_present", "any_antipsychotic",
                 "relapse_by_day_365"):
        drawn = (study.reports / "figures" / f"funnel_{name}.svg").exists()
        label = site_comparison.OUTCOME_FUNNEL_LABELS.get(name) or FIDELITY_LABELS[name][1]
        assert drawn or f"<li>{label}: " in html, name
    for stem in ("relapse_km", "relapse_cif", "forest_relapse", "funnel_p1_within_24h",
                 "subgroups", "ph_periods_relapse"):
        assert (study.reports / "figures" / f"{stem}.svg").exists()
        assert (study.reports / "figures" / f"{stem}.png").exists()


def test_the_first_screen_says_what_the_report_holds_before_any_section(study):
    html = (study.reports / "report.html").read_text()
    first = html[:html.index("id='plan'")]
    # built from odeval synth: the banner says so
    assert "Synthetic data." in first and "truth.json" in first
    for words in ("Cluster-randomised trial", "Data period", "People analysed",
                  "Primary result (relapse)", "Secondary results", "Run date",
                  "href='data_quality.html'", "href='#glossary'"):
        assert words in first, words
    # the primary result in words, its interval and the test; every secondary outcome with
    # the multiplicity procedure's verdict
    assert "With Open Dialogue the hazard of a first relapse was" in first
    assert "Test: " in first
    assert first.count("<li><strong>") >= 4
    assert "descriptive only" in first or "confirmed" in first
    # the contents link every numbered section and the glossary
    for anchor in ("#flow", "#data-quality", "#outcomes", "#fidelity", "#sites", "#glossary"):
        assert f"href='{anchor}'" in first
    assert (study.reports / "data_quality.html").exists()


def test_numbers_and_words_are_for_readers(study):
    import re

    html = re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "", (
        study.reports / "report.html").read_text())
    text = re.sub(r"<[^>]+>", " ", html[:html.index("<footer>")])
    assert not re.search(r"\d\.?\d*e-\d", text)  # no p = 1.2e-16
    for code in ("knha", "p1_within_24h", "carer_homemaker", "open_dialogue", "usual_care",
                 "age_at_index", "tau^2"):
        assert code not in text, code
    assert not re.search(r"[a-z] Method:", text)  # sentences end before the next begins
    assert "0.0 [0.0, 1.0]" not in text
    assert "id='glossary'" in html and "Hazard ratio" in html
    # notes of the estimates are shown (covariates with missing values set to the mean)
    assert "Notes: " in text and "missing values set to the mean" in text


def test_every_less_than_sign_in_the_pages_opens_a_tag(study):
    """Text such as "p < 0.001" is escaped: a bare "<" is not HTML (a validator rejects it,
    and "<0.001" would start an unknown tag in a browser)."""
    import re

    for page in ("report.html", "data_quality.html"):
        html = (study.reports / page).read_text()
        bare = [html[max(0, m.start() - 40):m.start() + 10]
                for m in re.finditer(r"<(?![A-Za-z/!])", html)]
        assert not bare, (page, bare[:3])


def test_check_outputs_passes_the_report_and_catches_a_planted_count_of_3_and_a_person_id(study, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["check-outputs", str(study.reports), "-w", str(study.warehouse)])
    assert ok.exit_code == 0, ok.output
    planted = tmp_path / "reports"
    shutil.copytree(study.reports, planted)
    con = duckdb.connect(str(study.warehouse), read_only=True)
    person = con.execute("select min(person_id) from clean.people").fetchone()[0]
    con.close()
    table = planted / "tables" / "analysis_site_effects.csv"
    lines = table.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("events")] = "3"
    table.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    html = planted / "report.html"
    html.write_text(html.read_text().replace("</main>", f"<p>{person}</p></main>"))
    bad = runner.invoke(app, ["check-outputs", str(planted), "-w", str(study.warehouse)])
    assert bad.exit_code == 1
    assert "tables/analysis_site_effects.csv: count.small" in bad.output
    assert "report.html: identifier.value: a person_id value appears in the file" in bad.output


def test_report_refuses_to_finish_when_an_output_breaks_disclosure_control(study, tmp_path):
    out = tmp_path / "reports"
    shutil.copytree(study.reports, out)
    before = (out / "report.html").read_bytes()
    (out / "extra.csv").write_text("site_id,n\nS01,3\n")
    con = duckdb.connect(str(study.warehouse), read_only=True)
    try:
        with pytest.raises(OdevalError, match="(?s)disclosure control failed.*extra.csv: count.small"):
            report.build(con, study.params, out)
    finally:
        con.close()
    assert (out / "report.html").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MANIFEST]


def test_an_unwritable_folder_gives_a_clear_error_and_no_partial_report(study, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    con = duckdb.connect(str(study.warehouse), read_only=True)
    try:
        with pytest.raises(OdevalError, match="file, not a folder") as info:
            report.build(con, study.params, blocker / "reports")
        assert info.value.rule == "output.path"
    finally:
        con.close()


def test_report_renders_in_headless_chromium_without_network_or_console_errors(study):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium chromium-driver")
    import tempfile

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,2000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=opts, service=service)
    try:
        page = (study.reports / "report.html").resolve().as_uri()
        driver.get(page)
        assert driver.title == "Open Dialogue evaluation report"
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert len(images) >= 6 and all(done and width > 0 for done, width in images)
        shot = study.reports / "report_screenshot.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        requests = []  # (document, url) of every request the browser made
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                requests.append((msg["params"].get("documentURL"), msg["params"]["request"]["url"]))
        from_report = [u for d, u in requests if d == page]
        assert page in from_report
        assert all(u == page or u.startswith("data:") for u in from_report), from_report
        network = [u for _, u in requests if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")]
        assert network == []
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
