"""Planted missing statuses at two years, and the simulation that checks their handling.

The generator (:mod:`pipeline.synth.simulate`) removes every employment record in the
2-year window of a person with probability

    logit P(removed) = logit(rtw_miss_rate) + log(rtw_miss_or_arm) od
                       + log(rtw_miss_or_prev_work) prev_work + log(rtw_miss_or_work) work

(``rtw_miss_*`` of :data:`pipeline.synth.params.EFFECTS`; ``prev_work``: in work at the last
record before the window, which the analysis sees; ``work``: in work at two years, which it
does not). All odds ratios 1: missing completely at random (MCAR); arm and ``prev_work``
only: missing at random given what is observed (MAR); ``work``: missing not at random
(MNAR), as when people who recovered are discharged and their status stops being recorded.

:func:`draw` makes the same mechanism on person-level draws (no records, no warehouse:
thousands of replicates in seconds), with a known true risk difference; :func:`simulate`
runs complete case and the multiple imputation of
:mod:`pipeline.analyses.return_to_work` (logistic by arm on site and the last status
before the window, Rubin's rules) on ``reps`` replicates and reports bias, coverage and
their Monte Carlo standard errors (Morris, White and Crowther 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

#: the mechanisms of :func:`draw` as (rate, or_arm, or_prev_work, or_work)
MECHANISMS = {"MCAR": (0.3, 1.0, 1.0, 1.0),
              "MAR": (0.15, 2.0, 6.0, 1.0),
              "MNAR": (0.15, 2.0, 1.0, 6.0)}


def planted(e, od: np.ndarray, prev_work: np.ndarray, work: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Which people lose every record in the window (boolean per person); none when
    ``e.rtw_miss_rate`` is 0 (no draws are made then)."""
    if e.rtw_miss_rate <= 0:
        return np.zeros(len(od), bool)
    lp = (special.logit(e.rtw_miss_rate) + np.log(e.rtw_miss_or_arm) * od
          + np.log(e.rtw_miss_or_prev_work) * prev_work + np.log(e.rtw_miss_or_work) * work)
    return rng.random(len(od)) < special.expit(lp)


#: person-level model of :func:`draw`: P(in work at the last record before the window) per
#: arm, P(in work at 2 years | in work before), P(in work at 2 years | not) per arm
PREV_WORK = {0: 0.25, 1: 0.40}
STAY = 0.75
NEW = {0: 0.10, 1: 0.18}
SITE_LOGIT_SD = 0.3


def true_risks() -> dict[int, float]:
    """P(in work at 2 years) per arm (averaged over the site effects: the draw's sites shift
    the log-odds of being in work before the window, symmetric around 0, and the risks
    below are computed over them by quadrature)."""
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    out = {}
    for a in (0, 1):
        pw = special.expit(special.logit(PREV_WORK[a]) + SITE_LOGIT_SD * x)
        out[a] = float(np.sum(w * (pw * STAY + (1 - pw) * NEW[a])))
    return out


def draw(n: int, mechanism: str, rng: np.random.Generator, sites: int = 7) -> pd.DataFrame:
    """One trial of ``n`` people: ``od``, ``site``, ``prev`` (work / not_working at the last
    record before the window), ``y_true`` and ``y`` (NaN where missing by ``mechanism``)."""
    rate, or_arm, or_prev, or_work = MECHANISMS[mechanism]
    od = rng.random(n) < 0.5
    site = rng.integers(0, sites, n)
    site_eff = rng.normal(0, SITE_LOGIT_SD, sites)
    pw = special.expit(special.logit(np.where(od, PREV_WORK[1], PREV_WORK[0])) + site_eff[site])
    prev = rng.random(n) < pw
    p = np.where(prev, STAY, np.where(od, NEW[1], NEW[0]))
    y = rng.random(n) < p
    lp = (special.logit(rate) + np.log(or_arm) * od + np.log(or_prev) * prev
          + np.log(or_work) * y)
    miss = rng.random(n) < special.expit(lp)
    return pd.DataFrame({"od": od.astype(int), "site": site.astype(str),
                         "prev": np.where(prev, "work", "not_working"),
                         "y_true": y.astype(float), "y": np.where(miss, np.nan, y.astype(float))})


def _rd(y: np.ndarray, od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Difference in proportions and its binomial variance, for each column of ``y``."""
    y1, y0 = y[od == 1], y[od == 0]
    p1, p0 = y1.mean(axis=0), y0.mean(axis=0)
    return p1 - p0, p1 * (1 - p1) / len(y1) + p0 * (1 - p0) / len(y0)


@dataclass
class SimulationResult:
    """Bias and coverage per mechanism and method (:func:`simulate`)."""

    table: pd.DataFrame   # mechanism, method, reps, true, mean, bias, bias_mcse, coverage, coverage_mcse, empse
    replicates: pd.DataFrame


def simulate(reps: int = 300, n: int = 800, m: int = 10, seed: int = 20261206,
             mechanisms=("MCAR", "MAR", "MNAR"), conf_level: float = 0.95) -> SimulationResult:
    """Complete case against multiple imputation on ``reps`` person-level trials per
    mechanism: the estimate is the risk difference (difference in proportions, binomial
    variance, normal interval for complete cases; Rubin's rules with its df after
    imputation by arm on site and the last status before the window)."""
    from pipeline.stats.impute import impute_binary, rubin

    truth = true_risks()
    rd_true = truth[1] - truth[0]
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    rows = []
    ss = np.random.SeedSequence(seed)
    for mech, child in zip(mechanisms, ss.spawn(len(mechanisms)), strict=True):
        rng = np.random.default_rng(child)
        for r in range(reps):
            d = draw(n, mech, rng)
            cc = d[d["y"].notna()]
            est, var = _rd(cc["y"].to_numpy()[:, None], cc["od"].to_numpy())
            se = float(np.sqrt(var[0]))
            rows.append(dict(mechanism=mech, method="complete case", rep=r, estimate=float(est[0]),
                             lower=float(est[0] - z * se), upper=float(est[0] + z * se)))
            imp = impute_binary(d, "y", ["site", "prev"], m=m, by="od",
                                seed=np.random.SeedSequence([seed, len(rows)]))
            Y = np.column_stack([imp.completed(j).to_numpy() for j in range(m)])
            q, u = _rd(Y, d["od"].to_numpy())
            pl = rubin(q, u, conf_level=conf_level)
            rows.append(dict(mechanism=mech, method="multiple imputation", rep=r,
                             estimate=pl.estimate, lower=pl.lower, upper=pl.upper))
    rep = pd.DataFrame(rows)
    rep["true"] = rd_true
    rep["covered"] = (rep["lower"] <= rd_true) & (rd_true <= rep["upper"])
    out = []
    for (mech, meth), g in rep.groupby(["mechanism", "method"], sort=False):
        k = len(g)
        cov = g["covered"].mean()
        out.append(dict(mechanism=mech, method=meth, reps=k, true=rd_true,
                        mean=g["estimate"].mean(), bias=g["estimate"].mean() - rd_true,
                        bias_mcse=g["estimate"].std(ddof=1) / np.sqrt(k), coverage=cov,
                        coverage_mcse=np.sqrt(cov * (1 - cov) / k),
                        empse=g["estimate"].std(ddof=1)))
    return SimulationResult(pd.DataFrame(out), rep)


def figure(res: SimulationResult, path) -> None:
    """Bias and coverage (with 95% Monte Carlo intervals) per mechanism and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = res.table
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    mechs = list(dict.fromkeys(t["mechanism"]))
    for k, (meth, colour) in enumerate((("complete case", "#b2182b"),
                                        ("multiple imputation", "#2166ac"))):
        g = t[t["method"] == meth].set_index("mechanism").loc[mechs]
        x = np.arange(len(mechs)) + (k - 0.5) * 0.25
        axes[0].errorbar(x, g["bias"], 1.96 * g["bias_mcse"], fmt="o", color=colour, label=meth)
        axes[1].errorbar(x, g["coverage"], 1.96 * g["coverage_mcse"], fmt="o", color=colour,
                         label=meth)
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[1].axhline(0.95, color="grey", lw=0.8)
    for ax, lab in zip(axes, ("bias of the risk difference", "coverage of the 95% interval"),
                       strict=True):
        ax.set_xticks(range(len(mechs)), mechs)
        ax.set_ylabel(lab)
    axes[0].legend(frameon=False, fontsize=8)
    reps = int(t["reps"].iloc[0])
    fig.suptitle(f"Missing status at 2 years: {reps} replicates per mechanism "
                 "(bars: 95% Monte Carlo intervals)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
