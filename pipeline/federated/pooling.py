"""Pooling at the coordinating centre (:func:`pool_bundles`): bundles checked against
each other, risk sets, Table 1, fidelity and validation summed, the site contrasts
meta-analysed; :func:`pool` then writes the pooled report
(:mod:`pipeline.federated.pooled_report`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import output_policy
from pipeline.errors import OdevalError
from pipeline.federated.bundle import (
    FIDELITY,
    MEASURES,
    RISK_SETS,
    SCHEMA_VERSION,
    SITE_EFFECTS,
    TABLE_ONE,
    VALIDATION_RULES,
    VALIDATION_TABLES,
    with_n_risk)
from pipeline.federated.checks import (
    _read_manifest,
    read_bundle)


# --------------------------------------------------------------------------- pool

def _check_same(bundles: list[dict], key: str, what: str, rule: str) -> None:
    first = bundles[0]
    for b in bundles[1:]:
        if b["manifest"].get(key) != first["manifest"].get(key):
            raise OdevalError(
                f"{what} {b['manifest'].get(key)!r} differs from {first['manifest'].get(key)!r} "
                f"of bundle {first['path']} (site {first['manifest']['site']}); bundles must come "
                "from the same odeval bundle schema, parameters and disclosure settings",
                rule=rule, file=b["path"])


def pool_risk_sets(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Sum site risk sets: counts added at each time of the union of times, n_risk rebuilt."""
    allr = pd.concat(frames, ignore_index=True)
    g = (allr.groupby(["outcome", "arm", "time"], sort=True)[["n_event", "n_competing", "n_censor"]]
         .sum().reset_index())
    return with_n_risk(g)


def expand(risk: pd.DataFrame) -> pd.DataFrame:
    """The (time, status) pairs the counts stand for, one row each (no identifiers): the
    sufficient statistic of Kaplan-Meier and Aalen-Johansen, so the estimators of
    :mod:`pipeline.stats` run on it unchanged. ``status`` is 0 censored, 1 event, 2 death."""
    parts = []
    for status, col in ((1, "n_event"), (2, "n_competing"), (0, "n_censor")):
        reps = risk[col].to_numpy()
        parts.append(pd.DataFrame({
            "outcome": np.repeat(risk["outcome"].to_numpy(), reps),
            "arm": np.repeat(risk["arm"].to_numpy(), reps),
            "time": np.repeat(risk["time"].to_numpy(), reps),
            "status": status}))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["outcome", "arm", "time", "status"], kind="mergesort",
                           ignore_index=True)


def freq_quantiles(values: Sequence[float], counts: Sequence[int],
                   probs: Sequence[float] = (0.25, 0.5, 0.75)) -> list[float]:
    """Quantiles (R type 7, numpy's default) of the values ``values[i]`` repeated
    ``counts[i]`` times, without expanding them."""
    v = np.asarray(values, float)
    c = np.asarray(counts, np.int64)
    keep = c > 0
    v, c = v[keep], c[keep]
    order = np.argsort(v, kind="mergesort")
    v, c = v[order], c[order]
    n = int(c.sum())
    if n == 0:
        return [math.nan] * len(probs)
    cum = np.cumsum(c)

    def at(pos: int) -> float:  # the value at 0-based position pos of the sorted values
        return float(v[np.searchsorted(cum, pos, side="right")])

    out = []
    for p in probs:
        h = (n - 1) * p
        lo = math.floor(h)
        x = at(lo)
        out.append(x if lo + 1 >= n else x + (h - lo) * (at(lo + 1) - x))
    return out


def pool_table_one(frames: Sequence[pd.DataFrame], variables: Sequence[str],
                   nonnormal: Sequence[str] = ()):
    """Pooled Table 1 from the sites' ``table_one`` frames, as a
    :class:`pipeline.stats.tableone.TableOneResult` (``.table``, ``.smd``, ``.groups``).

    Counts are summed; means and SDs (ddof 1) come from the summed n, sums and sums of
    squares; SMDs as tableone computes them. A non-normal variable gets its median and
    quartiles (type 7) from the summed people per value when every site carries them;
    otherwise it is shown as mean (SD) and ``.notes`` says so, and it is left out of
    ``.nonnormal`` (the variables whose pooled median is exact).
    """
    from pipeline.stats.tableone import TableOneResult, smd_from_counts, smd_from_moments

    allt = pd.concat(frames, ignore_index=True)
    people = allt[allt["kind"] == "people"].groupby("arm", sort=True)["n"].sum()
    groups = list(people.index)
    rows, smd, notes, exact_median = [], {}, [], []
    for v in variables:
        t = allt[allt["variable"] == v]
        miss = t[t["kind"] == "missing"].groupby("arm")["n"].sum().reindex(groups, fill_value=0)
        if (t["kind"] == "level").any():
            lev = t[t["kind"] == "level"].groupby(["arm", "level"])["n"].sum().unstack(
                "level", fill_value=0).reindex(index=groups, fill_value=0)
            lev = lev[sorted(lev.columns)]
            smd[v] = smd_from_counts(lev.to_numpy())
            for level in lev.columns:
                for g in groups:
                    nk = int(lev.loc[g].sum())
                    cnt = int(lev.at[g, level])
                    rows.append(dict(variable=v, level=level, group=g, kind="categorical", n=nk,
                                     missing=int(miss[g]), count=cnt,
                                     pct=100 * cnt / nk if nk else np.nan))
            continue
        c = t[t["kind"] == "continuous"].groupby("arm")[["n", "value_sum", "value_sum2"]].sum()
        c = c.reindex(groups, fill_value=0)
        vals = t[t["kind"] == "value"]
        # exact quantiles need every site's people per value (a site with no value rows but
        # some non-missing values would be left out of them)
        quantiles = v in nonnormal and not vals.empty and all(
            ((f["variable"] == v) & (f["kind"] == "value")).any()
            or not ((f["variable"] == v) & (f["kind"] == "continuous") & (f["n"] > 0)).any()
            for f in frames)
        if v in nonnormal and not quantiles:
            notes.append(f"{v}: the median cannot be pooled from the bundles (not every site "
                         "carries people per value); shown as mean (SD).")
        means, variances = [], []
        for g in groups:
            n, s, s2 = float(c.at[g, "n"]), float(c.at[g, "value_sum"]), float(c.at[g, "value_sum2"])
            mean = s / n if n > 0 else np.nan
            var = max((s2 - s * s / n) / (n - 1), 0.0) if n > 1 else np.nan
            means.append(mean)
            variances.append(var)
            q1 = med = q3 = np.nan
            if quantiles:
                vg = vals[vals["arm"] == g].groupby("level")["n"].sum()
                q1, med, q3 = freq_quantiles(pd.to_numeric(vg.index).to_numpy(float),
                                             vg.to_numpy())
            rows.append(dict(variable=v, level="", group=g,
                             kind="nonnormal" if quantiles else "normal", n=int(n),
                             missing=int(miss[g]), mean=mean,
                             sd=np.sqrt(var) if n > 1 else np.nan,
                             median=med, q1=q1, q3=q3))
        if quantiles:
            exact_median.append(v)
        smd[v] = smd_from_moments(means, variances)
    cols = ["variable", "level", "group", "kind", "n", "missing", "count", "pct", "mean",
            "sd", "median", "q1", "q3"]
    res = TableOneResult(pd.DataFrame(rows).reindex(columns=cols), notes)
    res.smd = pd.Series(smd, name="smd")
    res.groups = groups
    res.n_arm = {g: int(people[g]) for g in groups}
    res.nonnormal = exact_median
    res.formatted = res.table
    res.title = "Table 1 by arm, pooled from site bundles"
    return res


def pool_fidelity(frames: dict[str, pd.DataFrame], conf: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled fidelity cells (per site and arm, with the site, arm and overall margins) and
    their metrics, as :func:`pipeline.metrics.fidelity_metrics` computes them. The median
    hours to the first meeting cannot be pooled: its rows carry the mean (t interval)."""
    from pipeline.metrics import fidelity_metrics, mean_ci

    allf = pd.concat([f.assign(site_id=s) for s, f in frames.items()], ignore_index=True)
    cols = ["n_referrals", "value_sum", "value_sum2"]
    parts = [allf[["site_id", "arm", "indicator", "kind", *cols]]]
    for keys, fill in ((["site_id", "indicator", "kind"], {"arm": "all"}),
                       (["arm", "indicator", "kind"], {"site_id": "all"}),
                       (["indicator", "kind"], {"site_id": "all", "arm": "all"})):
        parts.append(allf.groupby(keys, sort=True)[cols].sum().reset_index().assign(**fill))
    cells = pd.concat(parts, ignore_index=True)[["site_id", "arm", "indicator", "kind", *cols]]
    cells["value_median"] = np.nan
    cells = cells.sort_values(["indicator", "site_id", "arm"], kind="mergesort",
                              ignore_index=True)
    exact = fidelity_metrics(cells, conf)
    hours = exact["kind"] == "hours"
    c = cells.set_index(["site_id", "arm", "indicator"])
    for i in exact.index[hours]:
        r = c.loc[(exact.at[i, "site_id"], exact.at[i, "arm"], exact.at[i, "indicator"])]
        exact.loc[i, ["estimate", "lower", "upper"]] = mean_ci(
            r.n_referrals, r.value_sum, r.value_sum2, conf)
    exact.loc[hours, "label"] = ("Hours from referral to first network meeting (mean; the "
                                 "median cannot be pooled from bundles)")
    exact.loc[hours, "ci_method"] = "mean of referral hours, normal"
    return cells, exact


def pool_validation(frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validation totals: per site and table with the all-sites rows (``site_id`` 'all'),
    in the shape of :func:`pipeline.metrics.dq_metrics`; quarantined rows per rule summed."""
    vt = pd.concat([t.assign(site_id=s) for s, (t, _) in frames.items()], ignore_index=True)
    tot = vt.groupby("table_name", as_index=False)[["n_raw", "n_clean", "n_quarantined"]].sum()
    out = pd.concat([vt, tot.assign(site_id="all")], ignore_index=True)
    out["quarantined_share"] = np.where(out.n_raw > 0, out.n_quarantined / out.n_raw.clip(lower=1),
                                        np.nan)
    out = out[["table_name", "site_id", "n_raw", "n_clean", "n_quarantined", "quarantined_share"]]
    out = out.assign(_all=out["site_id"] == "all").sort_values(
        ["table_name", "_all", "site_id"], kind="mergesort", ignore_index=True).drop(columns="_all")
    vr = pd.concat([r for _, r in frames.values()], ignore_index=True)
    rules = (vr.groupby(["table_name", "rule_id"], sort=True)["n_rows"].sum().reset_index())
    return out, rules


def meta_effects(effects: pd.DataFrame, settings: dict[str, Any]) -> tuple[dict, pd.DataFrame]:
    """Random-effects meta-analysis (``meta_method``, ``meta_test``, prediction interval) of
    each site contrast over the sites with an estimate; fewer than two: none."""
    from pipeline.stats import meta_analysis

    conf = float(settings["conf_level"])
    results, rows = {}, []
    for outcome, measure, scale in MEASURES:
        e = effects[(effects["outcome"] == outcome) & (effects["measure"] == measure)]
        e = e[np.isfinite(e["estimate"]) & (e["variance"] > 0)]
        if len(e) < 2:
            continue
        ma = meta_analysis(e["estimate"], e["variance"], method=settings["meta_method"],
                           test=settings["meta_test"], conf_level=conf, labels=list(e["site"]))
        results[measure] = ma
        f = np.exp if scale == "log" else (lambda x: x)
        rows.append(dict(
            outcome=outcome, measure=measure.removeprefix("log "), scale=scale,
            estimate=float(f(ma.estimate)), lower=float(f(ma.ci[0])), upper=float(f(ma.ci[1])),
            pi_lower=float(f(ma.pi[0])), pi_upper=float(f(ma.pi[1])),
            pooled=ma.estimate, se=ma.se, p=ma.p, tau2=ma.tau2, i2=ma.i2, q=ma.q, q_p=ma.q_p,
            k=ma.k, method=f"{settings['meta_method']} tau^2, {settings['meta_test']} test",
            notes=" ".join(ma.notes)))
    return results, pd.DataFrame(rows)


@dataclass
class Pooled:
    """Everything :func:`pool_bundles` found (exact: for the coordinating centre's analysts,
    not for publication; :mod:`pipeline.federated.pooled_report` makes the public versions)."""

    bundles: pd.DataFrame
    manifests: list[dict[str, Any]]
    settings: dict[str, Any]
    disclosure: dict[str, Any]
    risk_sets: pd.DataFrame
    km: pd.DataFrame
    cif: pd.DataFrame
    site_effects: pd.DataFrame
    meta: dict[str, Any]
    site_meta: pd.DataFrame
    table_one: Any
    people: pd.DataFrame
    fidelity_cells: pd.DataFrame
    fidelity: pd.DataFrame
    validation: pd.DataFrame
    validation_rules: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def exact_tables(self) -> dict[str, pd.DataFrame]:
        t1 = self.table_one.table.assign(smd=self.table_one.table["variable"].map(self.table_one.smd))
        return {"bundles": self.bundles, "risk_sets": self.risk_sets, "km": self.km,
                "cif": self.cif, "site_effects": self.site_effects, "site_meta": self.site_meta,
                "people": self.people, "table_one": t1, "fidelity": self.fidelity,
                "validation": self.validation, "validation_rules": self.validation_rules}

    @property
    def hr_meta(self):  # the relapse hazard ratio meta-analysis (first slice's name)
        return self.meta.get("log hazard ratio")


def pool_bundles(bundle_dirs: Sequence[str | Path], params: dict[str, Any] | None = None) -> Pooled:
    """Validate bundles on their own and against each other, and pool them (nothing is
    written; :func:`pool` writes).

    Refuses (:class:`OdevalError` naming the bundle) a bundle that fails :func:`read_bundle`,
    or whose bundle schema version, derive parameters hash, analysis settings or disclosure
    settings differ from the first bundle's; two bundles of one site are refused too.
    """
    from pipeline.stats import aalen_johansen, kaplan_meier

    if not bundle_dirs:
        raise OdevalError("no bundles given", rule="federated.pool.empty")
    bundles = []
    for p in bundle_dirs:
        manifest = _read_manifest(Path(p))
        if manifest["bundle_schema_version"] != SCHEMA_VERSION:
            raise OdevalError(f"bundle schema version {manifest['bundle_schema_version']!r}; "
                              f"this odeval reads version {SCHEMA_VERSION}",
                              rule="federated.pool.schema_version", file=p)
        bundles.append(read_bundle(p))
    _check_same(bundles, "bundle_schema_version", "bundle schema version",
                "federated.pool.schema_version")
    _check_same(bundles, "params_hash", "derive parameters hash", "federated.pool.params_hash")
    _check_same(bundles, "analysis_settings", "analysis settings", "federated.pool.settings")
    _check_same(bundles, "disclosure_settings", "disclosure settings",
                "federated.pool.disclosure")
    seen: dict[str, Path] = {}
    for b in bundles:
        site = b["manifest"]["site"]
        if site in seen:
            raise OdevalError(f"site {site!r} already pooled from bundle {seen[site]}",
                              rule="federated.pool.duplicate_site", file=b["path"])
        seen[site] = b["path"]
    bundles.sort(key=lambda b: b["manifest"]["site"])
    settings = bundles[0]["manifest"]["analysis_settings"]
    conf = float(settings["conf_level"])
    sites = [b["manifest"]["site"] for b in bundles]

    risk = pool_risk_sets([b["tables"][RISK_SETS] for b in bundles])
    pairs = expand(risk)
    km_frames, cif_frames = [], []
    for outcome, d in pairs.groupby("outcome", sort=True):
        d = d.assign(event=(d["status"] == 1).astype(int))
        km = kaplan_meier(d, "time", "event", group="arm", conf_level=conf).table
        km_frames.append(km.rename(columns={"group": "arm"}).assign(outcome=outcome))
        if (d["status"] > 0).any():
            aj = aalen_johansen(d, "time", "status", group="arm", conf_level=conf).table
            cif_frames.append(aj.rename(columns={"group": "arm"}).assign(outcome=outcome))
    km = pd.concat(km_frames, ignore_index=True)
    km = km[["outcome", *[c for c in km.columns if c != "outcome"]]]
    cif = pd.concat(cif_frames, ignore_index=True) if cif_frames else pd.DataFrame()
    if not cif.empty:
        cif = cif[["outcome", *[c for c in cif.columns if c != "outcome"]]]

    effects = pd.concat([b["tables"][SITE_EFFECTS].assign(site=s) for b, s in zip(bundles, sites)],
                        ignore_index=True)
    effects = effects[["site", *[c for c in effects.columns if c != "site"]]]
    meta, site_meta = meta_effects(effects, settings)

    t1 = pool_table_one([b["tables"][TABLE_ONE] for b in bundles], settings["table_one"],
                        settings["nonnormal"])
    people = pd.concat([b["tables"][TABLE_ONE].query("kind == 'people'")[["arm", "n"]]
                        .assign(site_id=s) for b, s in zip(bundles, sites)], ignore_index=True)
    people = people[["site_id", "arm", "n"]]
    cells, fid = pool_fidelity({s: b["tables"][FIDELITY] for b, s in zip(bundles, sites)}, conf)
    val, rules = pool_validation({s: (b["tables"][VALIDATION_TABLES],
                                      b["tables"][VALIDATION_RULES])
                                  for b, s in zip(bundles, sites)})
    bundle_table = pd.DataFrame([dict(
        site=b["manifest"]["site"], path=str(b["path"]),
        bundle_schema_version=b["manifest"]["bundle_schema_version"],
        created_at=b["manifest"].get("created_at", ""),
        odeval_version=b["manifest"].get("odeval_version", ""),
        params_hash=b["manifest"]["params_hash"],
        validation_scope=b["manifest"].get("validation_scope", "")) for b in bundles])
    notes = list(t1.notes)
    for _, e in effects[~np.isfinite(effects["estimate"])].iterrows():
        notes.append(f"site {e.site}, {e.outcome} {e.measure}: {e.note}")
    return Pooled(bundle_table, [b["manifest"] for b in bundles], settings,
                  bundles[0]["manifest"]["disclosure_settings"], risk, km, cif, effects, meta,
                  site_meta, t1, people, cells, fid, val, rules, notes)


def write_exact(pooled: Pooled, out_dir: str | Path) -> dict[str, Path]:
    """The exact pooled tables as CSV in ``out_dir`` (analysis files for the coordinating
    centre, not for publication: counts are not rounded or suppressed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, t in pooled.exact_tables().items():
        files[name] = out_dir / f"{name}.csv"
        t = t.copy()
        for c in t.columns[t.dtypes == object]:  # no spreadsheet formulas (OWASP)
            t[c] = t[c].map(output_policy.text)
        t.to_csv(files[name], index=False)
    return files


def pool(bundle_dirs: Sequence[str | Path], out_dir: str | Path, params: dict[str, Any],
         exact_dir: str | Path | None = None) -> tuple[Pooled, Path]:
    """``odeval pool``: pool the bundles, write the disclosure-controlled report and tables
    to ``out_dir`` (checked by check-outputs before it is moved into place) and, with
    ``exact_dir``, the exact pooled tables. Returns the pooled results and the report path."""
    from pipeline.federated import pooled_report

    pooled = pool_bundles(bundle_dirs, params)
    path = pooled_report.build(pooled, params, out_dir)
    if exact_dir is not None:
        write_exact(pooled, exact_dir)
    return pooled, path
