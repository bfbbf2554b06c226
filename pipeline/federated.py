"""Federated analysis: each site exports an aggregate bundle, the coordinating centre pools them.

Pilot sites are separate NHS trusts; many cannot send row-level records anywhere. The unit
of distribution is the site: :func:`export_bundle` writes, from one site's warehouse, a
folder of Parquet tables of aggregates and a ``manifest.json``; :func:`pool_bundles` checks
a set of bundles against each other and pools them.

A bundle holds (schema version :data:`SCHEMA_VERSION`):

``risk_sets.parquet``
    per outcome of ``derived.time_to_event`` and arm, one row per distinct observed time
    (a time with an event, a competing death or a censoring): ``time, n_risk, n_event``
    (cause 1, the outcome), ``n_competing`` (cause 2, competing death), ``n_censor``.
    The multiset of (time, status) pairs is a sufficient statistic for the Kaplan-Meier
    and Aalen-Johansen estimators, and these counts are that multiset, so the pooled
    curves are *exact*: summed over sites they are the counts of the pooled rows.
``site_effect.parquet``
    the site's log hazard ratio of relapse, comparison arm against the reference arm
    (Cox model within the site, model-based standard error, deaths censored, as
    :func:`pipeline.analyse.site_effects`), with its variance, or a null estimate and the
    reason when an arm has no events (or no non-events).

No row-level data, no person, staff, referral or contact identifier: only the site's own
label, outcome and arm names, times in days and counts.

Disclosure: the risk-set counts are exact aggregates, not rounded or suppressed; small
cells (e.g. one event at a day) are a disclosure consideration for the data-sharing
agreement under which a bundle leaves a site (the manifest says so). Rounding them
(``federated.round_risk_sets``) would make the pooled curves approximate: not built yet.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.errors import OdevalError
from pipeline.params import params_hash, section

#: Bump when a bundle's files or columns change; pooling refuses bundles of different versions.
SCHEMA_VERSION = 1

MANIFEST = "manifest.json"
RISK_SETS = "risk_sets.parquet"
SITE_EFFECT = "site_effect.parquet"

RISK_SET_COLUMNS = ["outcome", "arm", "time", "n_risk", "n_event", "n_competing", "n_censor"]


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
                              "meta_method", "meta_test")}


# --------------------------------------------------------------------------- export

def site_risk_sets(rows: pd.DataFrame) -> pd.DataFrame:
    """Counts per outcome, arm and distinct observed time from time-to-event rows
    (columns ``outcome, arm, time_days, event``, event 0 / 1 / 2)."""
    d = rows.assign(
        n_event=(rows["event"] == 1).astype("int64"),
        n_competing=(rows["event"] == 2).astype("int64"),
        n_censor=(rows["event"] == 0).astype("int64"),
    ).rename(columns={"time_days": "time"})
    g = (d.groupby(["outcome", "arm", "time"], sort=True)[["n_event", "n_competing", "n_censor"]]
         .sum().reset_index())
    return _with_n_risk(g)


def _with_n_risk(g: pd.DataFrame) -> pd.DataFrame:
    """``n_risk`` at each time: everyone whose time is at or after it (reverse cumulative sum
    of the events, competing events and censorings within outcome and arm)."""
    g = g.sort_values(["outcome", "arm", "time"], kind="mergesort").reset_index(drop=True)
    leaving = g["n_event"] + g["n_competing"] + g["n_censor"]
    g["n_risk"] = leaving[::-1].groupby([g["outcome"][::-1], g["arm"][::-1]]).cumsum()[::-1]
    g = g[RISK_SET_COLUMNS]
    return g.astype({"time": "int64", "n_risk": "int64", "n_event": "int64",
                     "n_competing": "int64", "n_censor": "int64"})


def site_effect(rows: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    """The site's log hazard ratio of relapse (comparison vs reference arm), model-based se."""
    from pipeline.stats import cox

    d = rows[rows["outcome"] == "relapse"]
    d = d.assign(od=(d["arm"] == settings["comparison_arm"]).astype(int),
                 relapse_only=(d["event"] == 1).astype(int))
    out = dict(outcome="relapse", measure="log hazard ratio",
               comparison=f"{settings['comparison_arm']} vs {settings['reference_arm']}",
               log_hr=math.nan, se=math.nan, variance=math.nan,
               n=int(len(d)), n_events=int(d["relapse_only"].sum()), note="")
    ev = d.groupby("od")["relapse_only"].agg(["sum", "size"])
    if len(ev) < 2 or (ev["sum"] == 0).any() or (ev["sum"] == ev["size"]).any():
        out["note"] = ("an arm without events (or without non-events): no hazard ratio; left "
                       "out of the meta-analysis")
        return out
    fit = cox(d, "time_days", "relapse_only", ["od"], ties=settings["ties"],
              conf_level=float(settings["conf_level"]))
    s = fit.summary.loc["od"]
    out.update(log_hr=float(s.coef), se=float(s.se), variance=float(s.se) ** 2,
               note=" ".join(fit.notes))
    return out


def export_bundle(con: duckdb.DuckDBPyConnection, site: str, out_dir: str | Path,
                  params: dict[str, Any]) -> Path:
    """Write the aggregate bundle of ``site`` to ``out_dir`` (created; must be empty).

    Parameters
    ----------
    con : the site's warehouse, after ``derive`` (``derived.time_to_event``, ``meta.loads``).
    site : the site's ``site_id`` (a warehouse may hold several sites; only this one is used).
    out_dir : folder to write the bundle to.
    params : the whole params.yaml (the derive section is hashed; analyse gives the arms and
        the Cox ties method).

    Returns the bundle folder.
    """
    out_dir = Path(out_dir)
    settings = _analyse_settings(params)
    try:
        rows = con.execute(
            "select outcome, arm, time_days, event from derived.time_to_event "
            "where site_id = $site order by outcome, arm, time_days, event",
            {"site": site}).df()
        loads = con.execute("select table_name, sha256, format, n_rows from meta.loads "
                            "order by table_name, sha256").fetchall()
    except duckdb.CatalogException:
        raise OdevalError("the warehouse has no derived.time_to_event; run `odeval run` (or "
                          "ingest, validate, derive) first", rule="federated.export.derived") from None
    if rows.empty:
        sites = [r[0] for r in con.execute(
            "select distinct site_id from derived.time_to_event order by 1").fetchall()]
        raise OdevalError(f"site {site!r} has no rows in derived.time_to_event; sites in the "
                          f"warehouse: {sites}", rule="federated.export.site")
    arms = sorted(rows["arm"].unique())
    unknown = sorted(set(arms) - {settings["reference_arm"], settings["comparison_arm"]})
    if unknown:
        raise OdevalError(f"site {site!r} has arms {unknown} besides "
                          f"{settings['reference_arm']} and {settings['comparison_arm']}",
                          rule="federated.export.arms")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OdevalError("bundle folder is not empty; give a new folder", rule="federated.export.out",
                          file=out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    risk = site_risk_sets(rows)
    risk.to_parquet(out_dir / RISK_SETS, index=False)
    eff = site_effect(rows, settings)
    pd.DataFrame([eff]).to_parquet(out_dir / SITE_EFFECT, index=False)

    files = {p.name: _sha256(p) for p in sorted(out_dir.iterdir()) if p.name != MANIFEST}
    manifest = {
        "bundle_schema_version": SCHEMA_VERSION,
        "site": site,
        "odeval_version": __version__,
        "params_hash": derive_params_hash(params),
        "params_hash_of": "derive section of params.yaml merged over the derive defaults",
        "analysis_settings": settings,
        "inputs": [dict(table=t, sha256=s, format=f, n_rows=int(n)) for t, s, f, n in loads],
        "files": files,
        "contents": {
            RISK_SETS: "per outcome of derived.time_to_event and arm, one row per distinct "
                       "observed time (event, competing death or censoring): n_risk, n_event "
                       "(cause 1), n_competing (cause 2, death), n_censor",
            SITE_EFFECT: "log hazard ratio of relapse, comparison vs reference arm, Cox model "
                         "within the site (model-based se, deaths censored), with its variance",
        },
        "exactness": {
            RISK_SETS: "exact aggregates: not rounded or suppressed; Kaplan-Meier and "
                       "Aalen-Johansen pooled from them equal the estimates on the pooled rows",
            SITE_EFFECT: "exact maximum partial likelihood fit within the site; the pooled "
                         "hazard ratio is a random-effects meta-analysis of the sites, not the "
                         "site-stratified Cox model on the pooled rows",
        },
        "disclosure": "No row-level data and no person, staff, referral or contact identifier. "
                      "Risk-set counts are exact: small cells (1 to 7 people at a time) occur "
                      "and are a disclosure consideration to be covered by the data-sharing "
                      "agreement under which this bundle leaves the site. The bundle is not an "
                      "output for publication.",
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out_dir


# --------------------------------------------------------------------------- pool

def read_bundle(path: str | Path) -> dict[str, Any]:
    """Read and validate one bundle: the manifest is there and every file's sha256 matches."""
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise OdevalError("not a bundle: manifest.json missing", rule="federated.bundle.manifest",
                          file=path)
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OdevalError(f"manifest.json is not valid JSON: {exc}", rule="federated.bundle.manifest",
                          file=path) from None
    need = {"bundle_schema_version", "site", "params_hash", "files"}
    if not isinstance(manifest, dict) or need - set(manifest):
        raise OdevalError(f"manifest.json lacks {sorted(need - set(manifest or {}))}",
                          rule="federated.bundle.manifest", file=path)
    files = manifest["files"]
    for name in (RISK_SETS, SITE_EFFECT):
        if name not in files:
            raise OdevalError(f"manifest lists no {name}", rule="federated.bundle.files", file=path)
    extra = sorted(p.name for p in path.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise OdevalError(f"files not in the manifest: {extra}", rule="federated.bundle.files",
                          file=path)
    for name, sha in sorted(files.items()):
        f = path / name
        if not f.is_file():
            raise OdevalError(f"{name} listed in the manifest is missing",
                              rule="federated.bundle.files", file=path)
        if _sha256(f) != sha:
            raise OdevalError(f"{name}: sha256 does not match the manifest (changed after export)",
                              rule="federated.bundle.sha256", file=path)
    risk = pd.read_parquet(path / RISK_SETS)
    if list(risk.columns) != RISK_SET_COLUMNS:
        raise OdevalError(f"{RISK_SETS} has columns {list(risk.columns)}, expected "
                          f"{RISK_SET_COLUMNS}", rule="federated.bundle.columns", file=path)
    # n_risk must be what the counts imply: a bundle is self-consistent or it is refused
    if not risk.reset_index(drop=True).equals(_with_n_risk(risk.drop(columns="n_risk"))):
        raise OdevalError(f"{RISK_SETS}: n_risk does not equal the counts of later times",
                          rule="federated.bundle.risk_sets", file=path)
    effect = pd.read_parquet(path / SITE_EFFECT)
    return dict(path=path, manifest=manifest, risk_sets=risk, site_effect=effect)


def _check_same(bundles: list[dict], key: str, what: str, rule: str) -> None:
    first = bundles[0]
    for b in bundles[1:]:
        if b["manifest"].get(key) != first["manifest"].get(key):
            raise OdevalError(
                f"{what} {b['manifest'].get(key)!r} differs from {first['manifest'].get(key)!r} "
                f"of bundle {first['path']} (site {first['manifest']['site']}); bundles must come "
                "from the same odeval bundle schema and parameters", rule=rule, file=b["path"])


def pool_risk_sets(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Sum site risk sets: counts added at each time of the union of times, n_risk rebuilt."""
    allr = pd.concat(frames, ignore_index=True)
    g = (allr.groupby(["outcome", "arm", "time"], sort=True)[["n_event", "n_competing", "n_censor"]]
         .sum().reset_index())
    return _with_n_risk(g)


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


def pool_bundles(bundle_dirs: Sequence[str | Path], out_dir: str | Path,
                 params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate bundles against each other and pool them; write CSVs to ``out_dir``.

    Refuses (:class:`OdevalError` naming the bundle) a bundle without a manifest, with a
    file whose sha256 differs from its manifest, or whose bundle schema version, derive
    parameters hash or analysis settings differ from the first bundle's; two bundles of one
    site are refused too.

    Returns a dict: ``bundles`` (site, path, version, hash), ``risk_sets`` (summed counts),
    ``km`` (Kaplan-Meier per outcome and arm, competing deaths censored), ``cif``
    (Aalen-Johansen cumulative incidence of the outcome and of death), ``site_effects`` and
    ``meta`` (the :class:`pipeline.stats.meta.MetaAnalysisResult` of the site log hazard
    ratios; None with fewer than two), ``files`` (CSV paths).
    """
    from pipeline.stats import aalen_johansen, kaplan_meier, meta_analysis

    if not bundle_dirs:
        raise OdevalError("no bundles given", rule="federated.pool.empty")
    bundles = [read_bundle(p) for p in bundle_dirs]
    _check_same(bundles, "bundle_schema_version", "bundle schema version",
                "federated.pool.schema_version")
    if bundles[0]["manifest"]["bundle_schema_version"] != SCHEMA_VERSION:
        raise OdevalError(f"bundle schema version {bundles[0]['manifest']['bundle_schema_version']!r}; "
                          f"this odeval reads version {SCHEMA_VERSION}",
                          rule="federated.pool.schema_version", file=bundles[0]["path"])
    _check_same(bundles, "params_hash", "derive parameters hash", "federated.pool.params_hash")
    _check_same(bundles, "analysis_settings", "analysis settings", "federated.pool.settings")
    seen: dict[str, Path] = {}
    for b in bundles:
        site = b["manifest"]["site"]
        if site in seen:
            raise OdevalError(f"site {site!r} already pooled from bundle {seen[site]}",
                              rule="federated.pool.duplicate_site", file=b["path"])
        seen[site] = b["path"]
    settings = bundles[0]["manifest"].get("analysis_settings") or _analyse_settings(params or {})
    conf = float(settings["conf_level"])

    risk = pool_risk_sets([b["risk_sets"] for b in bundles])
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

    effects = pd.concat([b["site_effect"].assign(site=b["manifest"]["site"]) for b in bundles],
                        ignore_index=True)
    effects = effects[["site", *[c for c in effects.columns if c != "site"]]]
    usable = effects[np.isfinite(effects["log_hr"]) & (effects["variance"] > 0)]
    ma, meta_table = None, pd.DataFrame()
    if len(usable) >= 2:
        ma = meta_analysis(usable["log_hr"], usable["variance"], method=settings["meta_method"],
                           test=settings["meta_test"], conf_level=conf, labels=list(usable["site"]))
        meta_table = pd.DataFrame([dict(
            outcome="relapse", measure="pooled hazard ratio (random effects)",
            log_hr=ma.estimate, se=ma.se, hr=np.exp(ma.estimate), lower=np.exp(ma.ci[0]),
            upper=np.exp(ma.ci[1]), pi_lower=np.exp(ma.pi[0]), pi_upper=np.exp(ma.pi[1]),
            p=ma.p, tau2=ma.tau2, i2=ma.i2, q=ma.q, q_p=ma.q_p, k=ma.k,
            method=f"{settings['meta_method']} tau^2, {settings['meta_test']} test",
            notes=" ".join(ma.notes))])

    bundle_table = pd.DataFrame([dict(
        site=b["manifest"]["site"], path=str(b["path"]),
        bundle_schema_version=b["manifest"]["bundle_schema_version"],
        params_hash=b["manifest"]["params_hash"],
        odeval_version=b["manifest"].get("odeval_version")) for b in bundles])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"bundles": bundle_table, "risk_sets": risk, "km": km, "cif": cif,
              "site_effects": effects, "site_meta": meta_table}
    files = {}
    for name, t in tables.items():
        files[name] = out_dir / f"{name}.csv"
        t.to_csv(files[name], index=False)
    return dict(bundles=bundle_table, risk_sets=risk, km=km, cif=cif, site_effects=effects,
                meta=ma, site_meta=meta_table, files=files)
