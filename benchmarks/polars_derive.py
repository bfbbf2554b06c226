"""The derive stage's outcomes written in lazy polars: the other alternative to beat.

Not part of the product. This is what an analyst who knows polars would write without the
warehouse: ``scan_parquet`` the extract's files, build every relation as a lazy query
(joins, window expressions over ``person_id``, group-bys), then collect them all at once
with ``pl.collect_all``, so that polars plans them together and reads only the columns
used; the intermediate frames several relations share are marked ``.cache()``, so that
they are computed once. No DuckDB and no pandas on the way. Like
``benchmarks/pandas_derive.py`` it reads the *raw* extract, so it agrees with
``derived.*`` on an extract without faults (validation then quarantines nothing).

Relations (the outcome relations of pipeline/sql/derive/, same definitions, the same
columns as the pandas peer): ``people``, ``time_to_event``, ``recurrent``,
``acute_episodes``, ``mha_episodes``, ``antipsychotic``, ``activity``.

Usage::

    python -m benchmarks.polars_derive derive STUDY_DIR OUT_DIR   # writes OUT_DIR/<relation>.parquet
    python -m benchmarks.polars_derive check OUT_DIR WAREHOUSE     # prints {"equal": ..., ...}

``derive`` also writes ``OUT_DIR/timing.json``: ``read_and_compute_s`` and
``read_and_compute_cpu_s`` (wall and CPU seconds of building the plans and
``collect_all``, which reads the files; CPU of every thread) and ``write_s``. The check is
:func:`benchmarks.agreement.compare`, shared with the pandas peer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from benchmarks import agreement
from benchmarks.agreement import OUTCOMES, RELATIONS, main_check

#: Events that end each time-to-event outcome (death: from ``people.end_reason``).
EVENT_OUTCOME = {"relapse_episode": "relapse", "involuntary_admission": "involuntary_admission",
                 "admission_spell": "first_admission", "crisis_episode": "first_crisis",
                 "rtw_status": "return_to_work"}


def _params() -> dict:
    from pipeline.derive import resolve_params
    from pipeline.params import load_params, section

    return resolve_params(section(load_params(), "derive"))


def _scan(study: Path, table: str) -> pl.LazyFrame:
    return pl.scan_parquet(study / f"{table}.parquet")


def _days(later: str | pl.Expr, index: str | pl.Expr = "index_date") -> pl.Expr:
    """Whole days from ``index`` to ``later`` (null when either is)."""
    later = pl.col(later) if isinstance(later, str) else later
    index = pl.col(index) if isinstance(index, str) else index
    return (later - index).dt.total_days()


def _on_day(day: str | pl.Expr) -> pl.Expr:
    """The date ``day`` days after ``index_date``."""
    day = pl.col(day) if isinstance(day, str) else day
    return pl.col("index_date") + pl.duration(days=day)


def people(study: Path, p: dict) -> pl.LazyFrame:
    lf = _scan(study, "people")
    # data_end_reason is optional in the contract: null for everyone when the extract has none
    if "data_end_reason" not in lf.collect_schema().names():
        lf = lf.with_columns(data_end_reason=pl.lit(None, pl.String))
    fu = p["follow_up_days"]
    death_day, data_end_day = _days("death_date"), _days("data_end_date")
    end = pl.min_horizontal(death_day.fill_null(fu), data_end_day, pl.lit(fu, pl.Int64))
    return (lf.with_columns(age_at_index=pl.col("index_date").dt.year().cast(pl.Int64) - pl.col("birth_year"),
                            fu_end_day=end,
                            last_data_day=pl.min_horizontal(death_day.fill_null(data_end_day), data_end_day))
            .with_columns(fu_end_date=_on_day("fu_end_day"),
                          end_reason=pl.when(death_day.is_not_null() & (death_day == pl.col("fu_end_day")))
                          .then(pl.lit("death"))
                          .when((data_end_day == pl.col("fu_end_day")) & (data_end_day < fu))
                          .then(pl.lit("data_end")).otherwise(pl.lit("end_of_follow_up")),
                          person_days=pl.col("fu_end_day"))
            .drop("birth_year").sort("person_id"))


def _open_end_day(table: str, start: pl.Expr, detail: pl.Expr | None, last: pl.Expr,
                  p: dict) -> pl.Expr:
    """The day an open record ends (derive.open_end): the last day of data (never before the
    start), or start + N days if sooner (prescriptions: N days covered, so one less)."""
    from pipeline.derive import open_end_rows

    last = pl.max_horizontal(start, last)
    caps = [r for r in open_end_rows(p) if r["table_name"] == table and r["end_rule"] == "cap"]
    if not caps:
        return last
    cap = None  # the first row that matches the record's detail gives its maximum
    for r in caps:
        where = pl.lit(True) if r["detail"] is None else detail == r["detail"]
        cap = (pl.when(where) if cap is None else cap.when(where)).then(r["max_days"])
    shift = 1 if table == "prescriptions" else 0
    return pl.min_horizontal(last, start + cap.otherwise(None) - shift)  # no cap: last


def _spell_starts(study: Path, p: dict) -> pl.LazyFrame:
    """The admissions that start a hospital spell (not a transfer continuing the one before)."""
    a = (_scan(study, "admissions")
         .with_columns(transfer=(pl.col("admission_method") == "transfer").cast(pl.Int8))
         .sort("person_id", "admitted_on", "transfer", "discharged_on", "admission_id", nulls_last=True)
         .with_columns(prev_dis=pl.col("discharged_on").shift(1).over("person_id")))
    # a transfer after an admission with no discharge date starts a spell (contract, literally)
    continues = ((pl.col("transfer") == 1) & pl.col("prev_dis").is_not_null()
                 & (_days("admitted_on", "prev_dis") <= p["transfer_gap_days"]))
    return a.filter(~continues).select("person_id", event_on="admitted_on")


def care_records(study: Path, p: dict, ppl: pl.LazyFrame) -> pl.LazyFrame:
    """Admissions, crisis episodes and detentions as half-open day intervals (open records
    ended by derive.open_end), as derived.int_care_records."""
    pp = ppl.select("person_id", "index_date", "last_data_day")
    parts = []
    for kind, table, start, end, detail in (
            ("admission", "admissions", "admitted_on", "discharged_on", None),
            ("crisis_episode", "crisis_episodes", "start_on", "end_on", None),
            ("detention", "detentions", "start_on", "end_on", "legal_section")):
        d = _scan(study, table).join(pp, on="person_id")
        s_ = _days(start)
        dd = pl.col(detail) if detail else pl.lit(None, pl.String)
        opened = _open_end_day(table, s_, dd, pl.col("last_data_day"), p)
        parts.append(d.select(pl.lit(kind).alias("kind"), "person_id", dd.alias("detail"),
                              s_.alias("start"), _days(end).fill_null(opened).alias("end")))
    return pl.concat(parts)


def _episodes(rec: pl.LazyFrame, gap: int) -> pl.LazyFrame:
    """Records with their episode ``ep`` (unique over all people): by start, a record joins
    the current episode of its person when it starts no later than ``gap`` days after the
    latest end so far."""
    reach = pl.col("reach")  # the latest end among the person's records before this one
    return (rec.sort("person_id", "start", "end")
            .with_columns(reach=pl.col("end").cum_max().shift(1).over("person_id"))
            .with_columns(ep=(reach.is_null() | (pl.col("start") > reach + gap)).cum_sum()))


def _numbered(eps: pl.LazyFrame, ppl: pl.LazyFrame) -> pl.LazyFrame:
    """``episode_seq`` (1, 2, ... by start within a person), dates and ``fu_end_day``."""
    return (eps.with_columns(episode_seq=pl.col("start_day").rank("ordinal").over("person_id").cast(pl.Int64))
            .join(ppl.select("person_id", "index_date", "fu_end_day"), on="person_id")
            .with_columns(start_on=_on_day("start_day"), end_on=_on_day("end_day")))


def acute_episodes(rec: pl.LazyFrame, ppl: pl.LazyFrame, p: dict) -> pl.LazyFrame:
    comp = p["relapse_components"]
    kind = pl.col("kind")
    use = rec.filter(((kind == "admission") & ("admissions" in comp))
                     | ((kind == "crisis_episode") & ("crisis_episodes" in comp))
                     | ((kind == "detention") & ("detentions" in comp)
                        & pl.col("detail").is_in(p["involuntary_sections"])))
    eps = _episodes(use, p["episode_gap_days"]).group_by("ep").agg(
        pl.col("person_id").first(), start_day=pl.col("start").min(), end_day=pl.col("end").max(),
        n_records=pl.len().cast(pl.Int64),
        n_admissions=(kind == "admission").sum().cast(pl.Int64),
        n_crisis_episodes=(kind == "crisis_episode").sum().cast(pl.Int64),
        n_detentions=(kind == "detention").sum().cast(pl.Int64))
    return (_numbered(eps, ppl)
            .with_columns(relapse=(pl.col("start_day") >= max(1, p["relapse_grace_days"] + 1))
                          & (pl.col("start_day") <= pl.col("fu_end_day")))
            .select("person_id", "episode_seq", "start_day", "end_day", "start_on", "end_on", "n_records",
                    "n_admissions", "n_crisis_episodes", "n_detentions", "relapse")
            .sort("person_id", "episode_seq"))


def mha_episodes(rec: pl.LazyFrame, ppl: pl.LazyFrame, p: dict) -> pl.LazyFrame:
    detail = pl.col("detail")
    d = (rec.filter(pl.col("kind") == "detention")
         .with_columns(group=pl.when(detail.is_in(p["involuntary_sections"])).then(pl.lit("involuntary"))
                       .when(detail.is_in(p["place_of_safety_sections"])).then(pl.lit("place_of_safety"))
                       .when(detail.is_in(p["holding_power_sections"])).then(pl.lit("holding_power")))
         .filter(pl.col("group").is_not_null()))
    groups = ("involuntary", "place_of_safety", "holding_power")
    eps = _episodes(d, p["detention_gap_days"]).group_by("ep").agg(
        pl.col("person_id").first(), start_day=pl.col("start").min(), end_day=pl.col("end").max(),
        n_detentions=pl.len().cast(pl.Int64),
        **{f"{g}_start_day": pl.col("start").filter(pl.col("group") == g).min() for g in groups})
    # in hospital: an admission of the person began before the episode and had not ended
    adm = rec.filter(pl.col("kind") == "admission").select("person_id", adm_start="start", adm_end="end")
    inside = (eps.select("ep", "person_id", "start_day").join(adm, on="person_id")
              .filter((pl.col("adm_start") < pl.col("start_day")) & (pl.col("adm_end") >= pl.col("start_day")))
              .select("ep").unique().with_columns(in_hospital=pl.lit(True)))
    fu = pl.col("fu_end_day")

    def in_window(col: str) -> pl.Expr:
        return ((pl.col(col) >= 1) & (pl.col(col) <= fu)).fill_null(False)

    return (_numbered(eps.join(inside, on="ep", how="left")
                      .with_columns(pl.col("in_hospital").fill_null(False)), ppl)
            .with_columns(involuntary=pl.col("involuntary_start_day").is_not_null())
            .with_columns(involuntary_admission=in_window("involuntary_start_day")
                          & (p["involuntary_in_hospital"] | ~pl.col("in_hospital")),
                          place_of_safety=~pl.col("involuntary") & in_window("place_of_safety_start_day"),
                          holding_power=~pl.col("involuntary") & in_window("holding_power_start_day"))
            .select("person_id", "episode_seq", "start_day", "end_day", "start_on", "end_on", "n_detentions",
                    "involuntary", "involuntary_start_day", "place_of_safety_start_day",
                    "holding_power_start_day", "in_hospital", "involuntary_admission", "place_of_safety",
                    "holding_power")
            .sort("person_id", "episode_seq"))


def outcome_events(study: Path, p: dict, ppl: pl.LazyFrame, acute: pl.LazyFrame,
                   mha: pl.LazyFrame) -> pl.LazyFrame:
    """One row per outcome event in follow-up (days 1 .. fu_end_day): person_id,
    event_type, event_day."""
    pp = ppl.select("person_id", "index_date", "fu_end_day")
    dated = pl.concat([
        acute.filter("relapse").select("person_id", event_on="start_on",
                                       event_type=pl.lit("relapse_episode")),
        _spell_starts(study, p).with_columns(event_type=pl.lit("admission_spell")),
        _scan(study, "crisis_episodes").select("person_id", event_on="start_on",
                                               event_type=pl.lit("crisis_episode")),
        _scan(study, "employment").filter(pl.col("status").is_in(p["rtw_statuses"]))
        .select("person_id", event_on="recorded_on", event_type=pl.lit("rtw_status"))])
    dated = dated.join(pp, on="person_id").select("person_id", "event_type",
                                                  event_day=_days("event_on"), fu_end_day="fu_end_day")
    # Mental Health Act events: on the day their group's first section starts
    mha = mha.join(pp.select("person_id", "fu_end_day"), on="person_id")
    on_day = [mha.filter(where).select("person_id", event_type=pl.lit(kind), event_day=pl.col(col),
                                       fu_end_day="fu_end_day")
              for kind, where, col in (
                  ("involuntary_admission", pl.col("involuntary_admission"), "involuntary_start_day"),
                  ("detained_in_hospital", pl.col("involuntary") & pl.col("in_hospital"),
                   "involuntary_start_day"),
                  ("place_of_safety", pl.col("place_of_safety"), "place_of_safety_start_day"),
                  ("holding_power", pl.col("holding_power"), "holding_power_start_day"))]
    return (pl.concat([dated, *on_day])
            .filter(pl.col("event_day").is_between(1, pl.col("fu_end_day")))
            .select("person_id", "event_type", "event_day"))


def time_to_event(ppl: pl.LazyFrame, ev: pl.LazyFrame) -> pl.LazyFrame:
    firsts = (ev.with_columns(outcome=pl.col("event_type").replace_strict(EVENT_OUTCOME, default=None))
              .filter(pl.col("outcome").is_not_null())
              .group_by("person_id", "outcome").agg(pl.col("event_day").min()))
    dead = (ppl.filter((pl.col("end_reason") == "death") & (pl.col("fu_end_day") >= 1))
            .select("person_id", outcome=pl.lit("death"), event_day="fu_end_day"))
    has = pl.col("event_day").is_not_null()
    return (ppl.select("person_id", "site_id", "arm", "cluster_id", "index_date", "fu_end_day", "end_reason")
            .join(pl.LazyFrame({"outcome": OUTCOMES}), how="cross")
            .join(pl.concat([firsts, dead]), on=["person_id", "outcome"], how="left")
            .with_columns(event=pl.when(has).then(1)
                          .when((pl.col("end_reason") == "death") & (pl.col("outcome") != "death")).then(2)
                          .otherwise(0).cast(pl.Int64),
                          time_days=pl.coalesce("event_day", "fu_end_day"),
                          cnsr=pl.when(has).then(0).otherwise(1).cast(pl.Int64),
                          censor_reason=pl.when(~has).then(pl.col("end_reason")))
            .with_columns(event_date=pl.when(pl.col("event") > 0).then(_on_day("time_days")))
            .select("person_id", "site_id", "arm", "cluster_id", "outcome", "time_days", "event", "cnsr",
                    "censor_reason", "event_date")
            .sort("person_id", "outcome"))


def _clip(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Intervals cut to follow-up: from day 0 to fu_end_day; empty ones dropped."""
    return (lf.with_columns(from_day=pl.col("from_day").clip(lower_bound=0),
                            to_day=pl.min_horizontal("to_day", "fu_end_day"))
            .filter(pl.col("from_day") < pl.col("to_day")))


def exposures(study: Path, p: dict, ppl: pl.LazyFrame) -> pl.LazyFrame:
    """Antipsychotic prescriptions in follow-up as half-open day intervals, with doses."""
    from pipeline.derive import drug_list_path

    ref = (pl.scan_csv(drug_list_path(p), schema_overrides={"antipsychotic": pl.String})
           .with_columns(antipsychotic=pl.col("antipsychotic").str.to_lowercase() == "true"))
    names = ref.group_by("drug").agg(pl.col("antipsychotic").any()).filter("antipsychotic").select("drug")
    rx = (_scan(study, "prescriptions")
          .with_columns(drug=pl.col("drug").str.strip_chars().str.to_lowercase())
          .join(names, on="drug", how="semi")
          .join(ppl.select("person_id", "index_date", "fu_end_day", "last_data_day"), on="person_id")
          .with_columns(from_day=_days("start_on")))
    open_to = _open_end_day("prescriptions", pl.col("from_day"), None, pl.col("last_data_day"), p)
    rx = _clip(rx.with_columns(to_day=_days("end_on").fill_null(open_to) + 1))
    return (rx.join(ref.select("drug", "route", "ddd_mg", "cpz_equiv_mg"), on=["drug", "route"], how="left")
            .with_columns(days=pl.col("to_day") - pl.col("from_day"),
                          daily_ddd=pl.col("daily_dose_mg") / pl.col("ddd_mg"),
                          daily_cpz_mg=pl.col("daily_dose_mg") * 100.0 / pl.col("cpz_equiv_mg")))


def intervals(ppl: pl.LazyFrame, rec: pl.LazyFrame, acute: pl.LazyFrame, mha: pl.LazyFrame,
              rx: pl.LazyFrame) -> pl.LazyFrame:
    """Days in hospital, detained, either, in acute care and covered by an antipsychotic: one
    row per maximal interval of each kind (person_id, kind, from_day, to_day)."""
    pp = ppl.select("person_id", "fu_end_day")
    cols = ("person_id", "from_day", "to_day", "fu_end_day")
    bed = (rec.filter(pl.col("kind") == "admission").join(pp, on="person_id")
           .select("person_id", from_day="start", to_day="end", fu_end_day="fu_end_day"))
    detained = (mha.filter("involuntary").join(pp, on="person_id")
                .select("person_id", from_day="start_day", to_day="end_day", fu_end_day="fu_end_day"))
    acute = acute.join(pp, on="person_id").select(
        "person_id", from_day="start_day", to_day="end_day", fu_end_day="fu_end_day")
    iv = pl.concat([_clip(f.select(*cols)).with_columns(kind=pl.lit(k)) for k, f in (
        ("bed", bed), ("detained", detained), ("bed_or_detained", bed), ("bed_or_detained", detained),
        ("acute", acute))] + [rx.select(*cols, kind=pl.lit("antipsychotic"))])
    # the union of each person's intervals of a kind: a new island where one starts after
    # every interval before it has ended
    reach = pl.col("reach")
    return (iv.sort("person_id", "kind", "from_day", "to_day")
            .with_columns(reach=pl.col("to_day").cum_max().shift(1).over("person_id", "kind"))
            .with_columns(island=(reach.is_null() | (pl.col("from_day") > reach)).cum_sum())
            .group_by("island").agg(pl.col("person_id", "kind").first(),
                                    pl.col("from_day").min(), pl.col("to_day").max()))


def recurrent(ppl: pl.LazyFrame, ev: pl.LazyFrame, iv: pl.LazyFrame, p: dict) -> pl.LazyFrame:
    t = pl.col("event_type")
    counts = ev.group_by("person_id").agg(
        (t == typ).sum().cast(pl.Int64).alias(col) for col, typ in (
            ("relapse_count", "relapse_episode"), ("admission_spell_count", "admission_spell"),
            ("crisis_episode_count", "crisis_episode"), ("involuntary_count", "involuntary_admission"),
            ("detained_in_hospital_count", "detained_in_hospital"),
            ("place_of_safety_count", "place_of_safety"), ("holding_power_count", "holding_power")))
    g = p["relapse_grace_days"]
    length = pl.col("to_day") - pl.col("from_day")
    kind = pl.col("kind")
    days = iv.group_by("person_id").agg(
        bed_days=length.filter(kind == "bed").sum(), days_detained=length.filter(kind == "detained").sum(),
        acute_days=length.filter(kind == "acute").sum(), _blocked=length.filter(kind == "bed_or_detained").sum(),
        _acute_after_grace=(pl.col("to_day") - pl.max_horizontal("from_day", pl.lit(g))).clip(lower_bound=0)
        .filter(kind == "acute").sum())
    filled = [c for c in (*counts.collect_schema().names(), *days.collect_schema().names()) if c != "person_id"]
    lead = pl.max_horizontal(pl.col("fu_end_day") - g, pl.lit(0))
    at_risk = p["rate_person_time"] == "at_risk"
    blocked = "days_detained" if p["involuntary_in_hospital"] else "_blocked"
    return (ppl.select("person_id", "site_id", "arm", "cluster_id", "person_days", "fu_end_day")
            .join(counts, on="person_id", how="left").join(days, on="person_id", how="left")
            .with_columns(pl.col(*filled).fill_null(0).cast(pl.Int64))
            .with_columns(person_years=pl.col("person_days") / 365.25,
                          relapse_at_risk_days=lead - pl.col("_acute_after_grace"),
                          involuntary_at_risk_days=pl.col("person_days") - pl.col(blocked))
            .with_columns(relapse_person_years=(pl.col("relapse_at_risk_days") if at_risk else lead) / 365.25,
                          involuntary_person_years=pl.col("involuntary_at_risk_days" if at_risk
                                                          else "person_days") / 365.25)
            .drop("_blocked", "_acute_after_grace", "fu_end_day")
            .sort("person_id"))


def antipsychotic(ppl: pl.LazyFrame, rx: pl.LazyFrame, iv: pl.LazyFrame, p: dict) -> pl.LazyFrame:
    pp = ppl.select("person_id", "site_id", "arm", "cluster_id", "person_days", "fu_end_day")
    cover = (iv.filter(pl.col("kind") == "antipsychotic").join(pp.select("person_id", "fu_end_day"), on="person_id")
             .group_by("person_id").agg(
                 covered_days=(pl.col("to_day") - pl.col("from_day")).sum(),
                 use_last_days=(pl.col("to_day") > pl.max_horizontal(
                     pl.col("fu_end_day") - p["last_days_antipsychotic"], pl.lit(0))).any(),
                 first_use_day=pl.col("from_day").min()))
    days = pl.col("days")
    dose = rx.group_by("person_id").agg(
        # a sum of no known doses is unknown, not 0
        ddd_days=pl.when(pl.col("daily_ddd").count() > 0).then((pl.col("daily_ddd") * days).sum()),
        cpz_days=pl.when(pl.col("daily_cpz_mg").count() > 0).then((pl.col("daily_cpz_mg") * days).sum()),
        dose_incomplete=(pl.col("daily_ddd").is_null() | pl.col("daily_cpz_mg").is_null()).any())
    covered = pl.col("covered_days")
    whole = pl.col("fu_end_day") >= p["follow_up_days"]
    return (pp.join(cover, on="person_id", how="left").join(dose, on="person_id", how="left")
            .with_columns(covered.fill_null(0).cast(pl.Int64),
                          pl.col("use_last_days", "dose_incomplete").fill_null(False))
            .with_columns(any_use=covered > 0,
                          proportion_covered=pl.when(pl.col("person_days") > 0)
                          .then(covered / pl.col("person_days")),
                          mean_daily_ddd=pl.when(covered > 0).then(pl.col("ddd_days") / covered),
                          mean_daily_cpz_mg=pl.when(covered > 0).then(pl.col("cpz_days") / covered),
                          window_observed=whole)
            .with_columns(any_use_window=pl.when(whole).then("any_use"),
                          use_last_window=pl.when(whole).then("use_last_days"))
            .select("person_id", "site_id", "arm", "cluster_id", "person_days", "any_use", "use_last_days",
                    "covered_days", "proportion_covered", "mean_daily_ddd", "mean_daily_cpz_mg",
                    "dose_incomplete", "first_use_day", "window_observed", "any_use_window",
                    "use_last_window")
            .sort("person_id"))


def activity(study: Path, ppl: pl.LazyFrame, ev: pl.LazyFrame, p: dict) -> pl.LazyFrame:
    fu = p["follow_up_days"]
    lo = fu - p["rtw_window_days"]
    e = (_scan(study, "employment").select("person_id", "recorded_on", "status")
         .join(ppl.select("person_id", "index_date", "fu_end_day"), on="person_id")
         .with_columns(record_day=_days("recorded_on")))

    def last_status(where: pl.Expr, status: str, day: str) -> pl.LazyFrame:
        """Each person's latest record in a window (ties: the greatest status)."""
        return (e.filter(where)
                .sort("recorded_on", "status", descending=True, nulls_last=True)
                .group_by("person_id").agg(pl.col("status").first().alias(status),
                                           pl.col("record_day").first().alias(day)))

    day = pl.col("record_day")
    window = last_status((day >= lo) & (day <= pl.min_horizontal(pl.lit(fu), "fu_end_day")),
                         "status_2y", "status_2y_day")
    pre = last_status((day >= 0) & (day <= pl.min_horizontal(pl.lit(lo - 1), "fu_end_day")),
                      "last_status_pre", "last_status_pre_day")
    first_rtw = (ev.filter(pl.col("event_type") == "rtw_status")
                 .group_by("person_id").agg(first_rtw_day=pl.col("event_day").min()))
    death_day, data_end_day = _days("death_date"), _days("data_end_date")
    status = pl.col("status_2y")
    return (ppl.select("person_id", "site_id", "arm", "cluster_id", "baseline_activity", "index_date",
                       "death_date", "data_end_date")
            .join(window, on="person_id", how="left").join(first_rtw, on="person_id", how="left")
            .join(pre, on="person_id", how="left")
            .with_columns(rtw_2y=pl.when(status.is_not_null()).then(status.is_in(p["rtw_statuses"])),
                          window_reached=data_end_day >= lo,
                          died_before_window=death_day.is_not_null() & (death_day < lo)
                          & (death_day <= data_end_day))
            .select("person_id", "site_id", "arm", "cluster_id", "baseline_activity", "status_2y",
                    "status_2y_day", "rtw_2y", "first_rtw_day", "last_status_pre", "last_status_pre_day",
                    "window_reached", "died_before_window")
            .sort("person_id"))


def plans(study: Path, p: dict | None = None) -> dict[str, pl.LazyFrame]:
    """Every outcome relation as a lazy query on the extract's Parquet files."""
    p = p or _params()
    study = Path(study)
    # Each frame used by several relations is marked .cache(): computed once per collect_all.
    # polars' common-subplan elimination alone misses most of them (projection pushdown
    # makes the copies differ): without the marks the trust plan scanned people.parquet 103
    # times (187 scans in all, against 9) and took 3-4x the CPU time.
    ppl = people(study, p).cache()
    rec = care_records(study, p, ppl).cache()
    acute = acute_episodes(rec, ppl, p).cache()
    mha = mha_episodes(rec, ppl, p).cache()
    ev = outcome_events(study, p, ppl, acute, mha).cache()
    rx = exposures(study, p, ppl).cache()
    iv = intervals(ppl, rec, acute, mha, rx).cache()
    rel = {"people": ppl, "time_to_event": time_to_event(ppl, ev),
           "recurrent": recurrent(ppl, ev, iv, p), "acute_episodes": acute, "mha_episodes": mha,
           "antipsychotic": antipsychotic(ppl, rx, iv, p), "activity": activity(study, ppl, ev, p)}
    assert tuple(rel) == RELATIONS
    return rel


def derive_all(study: Path, p: dict | None = None) -> dict[str, pl.DataFrame]:
    """Every outcome relation, collected together (one ``pl.collect_all``)."""
    rel = plans(study, p)
    return dict(zip(rel, pl.collect_all(list(rel.values()))))


def main(argv: list[str]) -> None:
    agreement.main(argv, derive_all, lambda df, path: df.write_parquet(path))


if __name__ == "__main__":
    main(sys.argv[1:])
