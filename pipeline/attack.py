"""The attacker of ``odeval check-outputs --attack``: rebuild suppressed and rounded counts
from every published file together.

It reads only what odeval publishes (the CSV tables, ``metrics.json``,
``data_quality.json``, the pooled report's tables) and, for each count that is hidden
(``[c]``) or rounded, works out the set of whole numbers consistent with everything
published that depends on it: the rounding of the shown counts, the sums they take part in,
and the statistics computed from them (means, standardised differences, model
coefficients, effect estimates with their intervals, funnel targets). Linear structure
(cells adding up to shown totals) is solved as an integer programme with scipy's HiGHS
``milp``; the non-linear statistics by exact enumeration of the integer values the
published counts allow. A published number with ``d`` significant digits stands for the
interval of half a unit in its last digit (:func:`halfulp`).

A cell fails the policy's protection interval (:func:`pipeline.output_policy.protected`)
when the values it can take are narrower than that interval: a suppressed count must keep
a range at least as wide as the suppression range, a rounded count its whole rounding
interval. Each failure is a :class:`Finding` naming the file, the cell and the channel:

=========================  ================================================================
channel                    what the attacker combines
=========================  ================================================================
``mean_denominator``       an exact mean of a whole-number measure (and its t interval):
                           only some n in the rounded n's interval make mean x n whole
``smd``                    Table 1's standardised difference of a categorical variable,
                           the level counts (rounded or ``[c]``) and the arm sizes
``meta_regression``        the fidelity meta-regression's coefficients, standard errors
                           and tau^2 with the site log hazard ratios and standard errors:
                           three weighted sums of the sites' moderator values
``effect_ci``              a risk difference with its Wald interval and the rounded n and
                           events it rests on: the per-arm counts
``funnel_target``          a funnel plot's target (the overall exact proportion) and the
                           rounded site counts
``funnel_flag``            a site's funnel flag (above or below a control limit) that the
                           published counts do not give: computed from the exact counts, it
                           tells on which side of the limit they lie, within the rounding
``dq_people``              people per site in ``data_quality.json`` against the report's
                           rounded people per site
``hidden_sum``             cells adding up to a shown total (levels to the arm's people,
                           sites to all sites, rows in = clean + quarantined): each hidden
                           cell and the sum of the hidden cells of each total (``milp``)
``exposed``                an estimate published exactly for a site whose counts are
                           suppressed (the estimate rests on cells the tables hide)
``curve_no_interval``      a curve point re-estimated from rounded counts shown at 0% or
                           100% without an interval and without a flag
``injection``              a text cell a spreadsheet would run as a formula
``note_count``             a count of people, rows, events or missing values written in a
                           note or reason without the policy's rounding
=========================  ================================================================

The channels are the ones found by hand on the outputs of odeval before issue 18
(``tests/fixtures/published_before_18``, rebuilt by ``tests/unit/test_attack.py``); the
attacker is a test of the policy, not a proof that no other channel exists.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import disclosure

#: The most combinations one enumeration looks at before giving up on that channel
#: (giving up finds nothing: the attacker then does not claim the cell is exposed).
MAX_COMBINATIONS = 2_000_000


@dataclass(frozen=True)
class Finding:
    """A count the attacker narrowed below the policy's protection interval."""

    file: str
    cell: str
    channel: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: attack.{self.channel}: {self.cell}: {self.detail}"


# --------------------------------------------------------------------------- reading

def halfulp(text: str) -> float:
    """Half a unit in the last digit of a published number (``0.272727`` -> 5e-7,
    ``1.98345`` -> 5e-6, ``2.5e-05`` -> 5e-07, ``40`` -> 0.5)."""
    t = text.strip().lower().replace(",", "")
    mant, _, exp = t.partition("e")
    e = int(exp) if exp else 0
    dec = len(mant.split(".")[1]) if "." in mant else 0
    return 0.5 * 10.0 ** (e - dec)


def _num(text: str | None) -> float | None:
    if text is None:
        return None
    t = str(text).strip().replace(",", "")
    if t in ("", disclosure.SUPPRESSED, "null", "None", "nan"):
        return None
    try:
        return float(t)
    except ValueError:
        return None


@dataclass
class Table:
    file: str
    header: list[str]
    rows: list[dict[str, str]]

    def col(self, name: str) -> bool:
        return name in self.header


@dataclass
class Published:
    """Every CSV and JSON file under the roots (first root wins for a relative path)."""

    tables: dict[str, Table] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, *roots: Path) -> Published:
        pub = cls()
        for root in roots:
            root = Path(root)
            if not root.is_dir():
                continue
            for p in sorted(root.rglob("*")):
                if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
                    continue
                rel = p.relative_to(root).as_posix()
                if rel in pub.tables or rel in pub.json:
                    continue
                try:
                    text = p.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                if p.suffix.lower() == ".csv":
                    rows = list(csv.reader(io.StringIO(text)))
                    if rows:
                        header = rows[0]
                        pub.tables[rel] = Table(rel, header, [dict(zip(header, r)) for r in rows[1:]])
                elif p.suffix.lower() == ".json":
                    try:
                        pub.json[rel] = json.loads(text)
                    except json.JSONDecodeError:
                        continue
        return pub

    def text_cells(self, keys: bool = False) -> Iterator[tuple[str, str, str]]:
        """Every non-empty text the files publish, as ``(file, cell, text)``: each table
        cell (``row i column c``, the header being row 1) and each string value of the JSON
        files (``value a.b.0``), with ``keys`` also each JSON key (``key a.b``)."""
        for t in self.tables.values():
            for i, r in enumerate(t.rows, start=2):
                for c, v in r.items():
                    if v:
                        yield t.file, f"row {i} column {c}", v

        def walk(rel, obj, path):
            if isinstance(obj, dict):
                for k, v in obj.items():
                    if keys:
                        yield rel, f"key {path}{k}", str(k)
                    yield from walk(rel, v, f"{path}{k}.")
            elif isinstance(obj, list):
                for i, v in enumerate(obj):
                    yield from walk(rel, v, f"{path}{i}.")
            elif isinstance(obj, str) and obj:
                yield rel, f"value {path.rstrip('.')}", obj

        for rel, obj in self.json.items():
            yield from walk(rel, obj, "")

    def find(self, name: str) -> list[Table]:
        """Tables whose file is called ``name`` (any folder)."""
        return [t for rel, t in self.tables.items() if rel.rsplit("/", 1)[-1] == name]


# --------------------------------------------------------------------------- domains

def domain(text: str | None, cfg: dict[str, Any], upper: int | None = None) -> range | None:
    """The whole numbers a published count can stand for: a rounded count ``c`` is any
    ``m`` with ``round_count(m) == c``; ``[c]`` is any value from 0 to ``upper`` (a
    complementary suppression can hide any count); None when unknown and unbounded."""
    v = _num(text)
    if v is None:
        if text is not None and str(text).strip() in (disclosure.SUPPRESSED, "null", "None"):
            return range(0, upper + 1) if upper is not None else None
        return None
    from pipeline.output_policy import rounding_interval

    return rounding_interval(int(round(v)), cfg)


def _fmt_set(vals: Iterable[int]) -> str:
    v = sorted(set(vals))
    if not v:
        return "no value fits"
    if len(v) == 1:
        return f"pinned to {v[0]}"
    if v[-1] - v[0] + 1 == len(v) and len(v) > 3:
        return f"in {v[0]}..{v[-1]}"
    return "one of " + ", ".join(map(str, v[:8])) + (" ..." if len(v) > 8 else "")


def _check(shown: str, feasible: Iterable[int], cfg: dict[str, Any], file: str, cell: str,
           channel: str, why: str, out: list[Finding]) -> None:
    from pipeline.output_policy import protected

    vals = sorted(set(int(v) for v in feasible))
    if not vals:
        return  # inconsistent with the attacker's model: claims nothing
    if not protected(shown, vals, cfg):
        out.append(Finding(file, cell, channel, f"shown {shown or 'as nothing'}, {why}: "
                           f"{_fmt_set(vals)}"))


# --------------------------------------------------------------------------- channels

def _people_key(r: dict[str, str]) -> tuple[str, str, str]:
    return (r.get("dimension", "site"), r.get("level", ""), r.get("arm", ""))


def mean_denominator(pub: Published, cfg: dict[str, Any], know: dict, out: list[Finding]) -> None:
    """Exact means of whole-number measures (unit ``days``, t interval) beside a rounded n.

    For each n in the rounding interval, some whole total must lie within the published
    mean's precision times n; and the sum of squares implied by the interval's half-width
    (sd = half-width x sqrt(n) / t(n-1)) must be whole too."""
    from scipy import stats

    for t in pub.find("metrics_outcomes.csv"):
        for i, r in enumerate(t.rows, start=2):
            if r.get("unit") != "days" or not r.get("ci_method", "").startswith("t, mean"):
                continue
            est = _num(r.get("estimate"))
            dom = domain(r.get("n"), cfg)
            if est is None or dom is None or len(dom) < 2:
                continue
            h = halfulp(r["estimate"])
            lo, up = _num(r.get("lower")), _num(r.get("upper"))
            ok = []
            for m in dom:
                if m < 2:
                    continue
                s_lo, s_hi = (est - h) * m, (est + h) * m
                if math.floor(s_hi) < math.ceil(s_lo):
                    continue
                if lo is not None and up is not None and up > lo:
                    tq = stats.t.ppf(0.5 + float(0.95) / 2, m - 1)
                    hw = (up - lo) / 2
                    dhw = (halfulp(r["lower"]) + halfulp(r["upper"])) / 2
                    sd, dsd = hw * math.sqrt(m) / tq, dhw * math.sqrt(m) / tq
                    fits = False
                    for s in range(math.ceil(s_lo), math.floor(s_hi) + 1):
                        q = sd * sd * (m - 1) + s * s / m
                        dq = 2 * sd * dsd * (m - 1) + 1e-9 * q
                        if math.floor(q + dq) >= math.ceil(q - dq):
                            fits = True
                            break
                    if not fits:
                        continue
                ok.append(m)
            key = _people_key(r)
            know.setdefault(("people",) + key, set(dom))
            know[("people",) + key] &= set(ok) if ok else set(dom)
            _check(r["n"], ok, cfg, t.file, f"row {i} n ({key[0]} {key[1]}, {key[2]}, "
                   f"{r.get('outcome')} {r.get('metric')})", "mean_denominator",
                   f"the mean {r['estimate']} x n must be a whole number of days", out)


def _people_domain(pub: Published, cfg, know, dim: str, level: str, arm: str) -> set[int] | None:
    got = know.get(("people", dim, level, arm))
    if got:
        return set(got)
    for t in pub.find("metrics_outcomes.csv"):
        for r in t.rows:
            if (r.get("dimension"), r.get("level"), r.get("arm"), r.get("outcome"),
                    r.get("metric")) == (dim, level, arm, "relapse", "rate"):
                d = domain(r.get("n"), cfg)
                return set(d) if d is not None else None
    return None


def _smd_two(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Yang-Dalton SMD of two groups for stacks of level counts (rows), as
    :func:`pipeline.stats.tableone.smd_from_counts` (first level dropped, pseudo-inverse)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = a / a.sum(axis=1, keepdims=True)
        p2 = b / b.sum(axis=1, keepdims=True)
    p1, p2 = p1[:, 1:], p2[:, 1:]
    k = p1.shape[1]
    S = np.zeros((len(p1), k, k))
    for p in (p1, p2):
        S -= p[:, :, None] * p[:, None, :] / 2
        idx = np.arange(k)
        S[:, idx, idx] += p / 2
    T = p1 - p2
    if k == 0:
        return np.zeros(len(T))
    out = np.empty(len(T))
    for a in range(0, len(T), 100_000):  # in chunks: memory stays small
        Sc, Tc = S[a:a + 100_000], T[a:a + 100_000]
        ok = np.abs(np.linalg.det(Sc)) > 1e-12
        q = np.empty(len(Tc))
        if ok.any():
            q[ok] = np.einsum("ni,ni->n", Tc[ok], np.linalg.solve(Sc[ok], Tc[ok][:, :, None])[:, :, 0])
        if (~ok).any():
            Sp = np.linalg.pinv(Sc[~ok], rcond=1e-10)
            q[~ok] = np.einsum("ni,nij,nj->n", Tc[~ok], Sp, Tc[~ok])
        out[a:a + 100_000] = q
    return np.sqrt(out.clip(0))


def _arm_vectors(cells: list[str], total: set[int], cfg) -> np.ndarray:
    """Every vector of level counts consistent with the shown cells summing to one of
    ``total`` (rows), or an empty array when there are too many."""
    top = max(total)
    doms = [domain(c, cfg, upper=top) for c in cells]
    if any(d is None for d in doms):
        return np.empty((0, len(cells)))
    hidden = [j for j, c in enumerate(cells) if _num(c) is None]
    shown = [j for j in range(len(cells)) if j not in hidden]
    size = math.prod(len(doms[j]) for j in shown) * (top + 1) ** max(len(hidden) - 1, 0) * len(total)
    if size > MAX_COMBINATIONS:
        return np.empty((0, len(cells)))
    rows = []
    for combo in itertools.product(*[doms[j] for j in shown]):
        base = sum(combo)
        for n in total:
            rest = n - base
            if rest < 0:
                continue
            if not hidden:
                if rest == 0:
                    rows.append(combo)
                continue
            for free in itertools.product(range(rest + 1), repeat=len(hidden) - 1):
                last = rest - sum(free)
                if last < 0:
                    continue
                v = [0] * len(cells)
                for j, x in zip(shown, combo):
                    v[j] = x
                for j, x in zip(hidden, [*free, last]):
                    v[j] = x
                rows.append(tuple(v))
    return np.array(sorted(set(rows)), dtype=float).reshape(-1, len(cells))


def _smd_is_public(vr, levels, arms, rows, target, tol) -> bool:
    from pipeline.output_policy import smd_from_public

    counts, totals = [], []
    for a in arms:
        counts.append([_int_or_none(next(r["n"] for r in vr if r["level"] == lv and r["arm"] == a))
                       for lv in levels if lv != "(missing)"])
        people = _int_or_none(next((r["n"] for r in rows if r["variable"] == "people"
                                    and r["arm"] == a), None))
        miss = [r["n"] for r in vr if r["level"] == "(missing)" and r["arm"] == a]
        m = _int_or_none(miss[0]) if miss else 0
        totals.append(None if people is None else people - (m or 0))
    v = smd_from_public(counts, totals)
    return bool(np.isfinite(v) and abs(v - target) <= tol)


def _int_or_none(text) -> int | None:
    v = _num(text)
    return None if v is None else int(round(v))


def smd(pub: Published, cfg, know, out: list[Finding]) -> None:
    """Table 1's SMD of each categorical variable with its level counts and arm sizes."""
    for t in [*pub.find("analysis_table_one.csv"), *pub.find("table_one.csv")]:
        rows = t.rows
        arms = list(dict.fromkeys(r["arm"] for r in rows))
        if len(arms) != 2:
            continue
        people = {}
        for a in arms:
            pr = [r for r in rows if r["variable"] == "people" and r["arm"] == a]
            d = domain(pr[0]["n"], cfg) if pr else None
            dom = set(d) if d is not None else None
            k = _people_domain(pub, cfg, know, "site", "all", a) if "metrics" not in t.file else None
            if dom is not None and k:
                dom &= k
            people[a] = dom
        if any(v is None or not v for v in people.values()):
            continue
        for var in dict.fromkeys(r["variable"] for r in rows if r.get("kind") == "n (%)"):
            vr = [r for r in rows if r["variable"] == var]
            levels = list(dict.fromkeys(r["level"] for r in vr))
            smd_txt = next((r["smd"] for r in vr if _num(r.get("smd")) is not None), None)
            if smd_txt is None:
                continue
            target, tol = float(smd_txt), halfulp(smd_txt) * 1.000001
            if _smd_is_public(vr, levels, arms, rows, target, tol):
                continue  # recomputed from the published cells: it adds nothing
            cells = {a: [next(r["n"] for r in vr if r["level"] == lv and r["arm"] == a)
                         for lv in levels] for a in arms}
            va = _arm_vectors(cells[arms[0]], people[arms[0]], cfg)
            vb = _arm_vectors(cells[arms[1]], people[arms[1]], cfg)
            if not len(va) or not len(vb) or len(va) * len(vb) > MAX_COMBINATIONS:
                continue
            real = [j for j, lv in enumerate(levels) if lv != "(missing)"]
            ia, ib = np.meshgrid(np.arange(len(va)), np.arange(len(vb)), indexing="ij")
            ia, ib = ia.ravel(), ib.ravel()
            s = _smd_two(va[ia][:, real], vb[ib][:, real])
            fit = np.abs(s - target) <= tol
            if not fit.any():
                continue
            for side, (a, v, ix) in enumerate(((arms[0], va, ia), (arms[1], vb, ib))):
                sol = v[ix[fit]]
                for j, lv in enumerate(levels):
                    shown = cells[a][j]
                    _check(shown, sol[:, j].astype(int), cfg, t.file, f"{var}={lv}, {a}", "smd",
                           f"the SMD {smd_txt} with the other cells and the arm sizes", out)


def _refits_from_published(fo: Table, mod: str, b0: float, b1: float, tau2: float) -> bool:
    """Whether weighted least squares on the published site values (log HR, se, the
    moderator as shown) with the published tau^2 gives the published coefficients."""
    try:
        y = np.array([float(r["log_hr"]) for r in fo.rows])
        v = np.array([float(r["se"]) ** 2 for r in fo.rows])
        x = np.array([float(r[mod]) for r in fo.rows])
    except (KeyError, ValueError):
        return False
    w = 1 / (v + tau2)
    X = np.column_stack([np.ones_like(x), x])
    try:
        b = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * y))
    except np.linalg.LinAlgError:
        return False
    return bool(np.allclose(b, [b0, b1], rtol=1e-4, atol=1e-5))


def meta_regression(pub: Published, cfg, know, out: list[Finding]) -> None:
    """The fidelity meta-regression against the sites' fidelity counts.

    Given tau^2, the coefficients are weighted least squares with w = 1 / (se^2 + tau^2),
    so the published intercept b0, slope b1 and their standard errors give three sums over
    the sites' moderator values v: sum w v = sum w (y - b0) / b1, sum w v^2 = sum w (se0 /
    se1)^2 (the ratio cancels any scale factor of the variance), and sum w v y = b0 sum w v
    + b1 sum w v^2. Each site's v is one of the fractions events / n its rounded or
    suppressed counts allow; the sites are split in two halves whose sums are matched
    (meet in the middle)."""
    for mr in pub.find("analysis_fidelity_meta_regression.csv"):
        folder = mr.file.rsplit("/", 1)[0] if "/" in mr.file else ""
        fo = [t for t in pub.find("analysis_fidelity_by_site_outcome.csv")
              if t.file.rsplit("/", 1)[0] == folder if "/" in t.file] or pub.find(
            "analysis_fidelity_by_site_outcome.csv")
        fm = pub.find("metrics_fidelity.csv")
        if not fo or not fm or len(mr.rows) != 2:
            continue
        fo, fm = fo[0], fm[0]
        mod = mr.rows[1]["term"]
        r0, r1 = mr.rows
        vals = [_num(r0["coef"]), _num(r1["coef"]), _num(r0["se"]), _num(r1["se"]),
                _num(r0.get("tau2"))]
        if any(v is None for v in vals) or vals[1] == 0:
            continue
        b0, b1, s0, s1, tau2 = vals
        if _refits_from_published(fo, mod, b0, b1, tau2):
            continue  # fitted on the published values: it adds nothing
        sites = [r["site_id"] for r in fo.rows]
        y = np.array([float(r["log_hr"]) for r in fo.rows])
        se = np.array([float(r["se"]) for r in fo.rows])
        w = 1 / (se ** 2 + tau2)
        dy = np.array([halfulp(r["log_hr"]) for r in fo.rows])
        dse = np.array([halfulp(r["se"]) for r in fo.rows])
        dtau = halfulp(r0["tau2"])
        dw = w * w * (2 * se * dse + dtau)
        db0, db1 = halfulp(r0["coef"]), halfulp(r1["coef"])
        ds0, ds1 = halfulp(r0["se"]), halfulp(r1["se"])
        A = float(np.sum(w * (y - b0)) / b1)
        C = float(np.sum(w) * (s0 / s1) ** 2)
        D = b0 * A + b1 * C
        tA = float((np.sum(dw * np.abs(y - b0)) + np.sum(w * (dy + db0))) / abs(b1)
                   + abs(A) * db1 / abs(b1))
        tC = float(np.sum(dw) * (s0 / s1) ** 2 + C * 2 * (ds0 / s0 + ds1 / s1))
        tD = abs(b0) * tA + abs(A) * db0 + abs(b1) * tC + C * db1
        tA, tC, tD = 2 * tA + 1e-12, 2 * tC + 1e-12, 2 * tD + 1e-12
        # tolerance of each site's own terms (w, y to their precision)
        tA += float(np.sum(dw)); tC += float(np.sum(dw)); tD += float(np.sum(dw * np.abs(y) + w * dy))
        cands, labels, shown = [], [], []
        for s in sites:
            fr = [r for r in fm.rows if r["site_id"] == s and r["indicator"] == mod
                  and r["arm"] == "open_dialogue"]
            if not fr:
                break
            nd = domain(fr[0]["n"], cfg)
            if nd is None:
                break
            c, lab = [], []
            for m in nd:
                if m == 0:
                    continue
                ed = domain(fr[0]["events"], cfg, upper=m)
                if ed is None:
                    continue
                for x in ed:
                    if x <= m:
                        c.append(x / m)
                        lab.append((x, m))
            cands.append(np.array(c))
            labels.append(lab)
            shown.append((fr[0]["n"], fr[0]["events"]))
        if len(cands) != len(sites) or not all(len(c) for c in cands):
            continue
        k = len(sites)
        half = k // 2
        left, right = list(range(half)), list(range(half, k))

        def sums(idx):
            if math.prod(len(cands[i]) for i in idx) > MAX_COMBINATIONS:
                return None
            grids = np.meshgrid(*[np.arange(len(cands[i])) for i in idx], indexing="ij")
            choice = np.stack([g.ravel() for g in grids], axis=1) if idx else np.zeros((1, 0), int)
            a = np.zeros(len(choice)); c2 = np.zeros(len(choice)); d = np.zeros(len(choice))
            for col, i in enumerate(idx):
                v = cands[i][choice[:, col]]
                a += w[i] * v; c2 += w[i] * v * v; d += w[i] * v * y[i]
            return choice, a, c2, d

        L, R = sums(left), sums(right)
        if L is None or R is None:
            continue
        order = np.argsort(R[1])
        ra, rc, rd, rch = R[1][order], R[2][order], R[3][order], R[0][order]
        hits = {i: set() for i in range(k)}
        n_sol = 0
        for j in range(len(L[0])):
            need = A - L[1][j]
            lo, hi = np.searchsorted(ra, need - tA), np.searchsorted(ra, need + tA, "right")
            if hi <= lo:
                continue
            sel = slice(lo, hi)
            ok = (np.abs(rc[sel] + L[2][j] - C) <= tC) & (np.abs(rd[sel] + L[3][j] - D) <= tD)
            if not ok.any():
                continue
            for col, i in enumerate(left):
                hits[i].add(labels[i][L[0][j, col]])
            for row in rch[sel][ok]:
                n_sol += 1
                for col, i in enumerate(right):
                    hits[i].add(labels[i][row[col]])
            if n_sol > MAX_COMBINATIONS:
                break
        if n_sol == 0 or n_sol > MAX_COMBINATIONS:
            continue
        for i, s in enumerate(sites):
            n_txt, e_txt = shown[i]
            sol = hits[i]
            _check(e_txt, [x for x, _ in sol], cfg, fm.file, f"site {s}, {mod} events (open_dialogue)",
                   "meta_regression", f"the meta-regression ({mr.file}) fits only "
                   + ", ".join(f"{x}/{m}" for x, m in sorted(sol)[:4]), out)
            _check(n_txt, [m for _, m in sol], cfg, fm.file, f"site {s}, {mod} n (open_dialogue)",
                   "meta_regression", f"the meta-regression ({mr.file})", out)


def effect_ci(pub: Published, cfg, know, out: list[Finding], conf: float = 0.95) -> None:
    """Risk differences with Wald intervals beside their rounded n and events."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + conf / 2)
    for t in pub.find("site_effects.csv"):
        if not {"measure", "estimate", "lower", "upper", "n", "n_events"} <= set(t.header):
            continue
        for i, r in enumerate(t.rows, start=2):
            if r["measure"] != "risk difference" or "Wald" not in r.get("method", ""):
                continue
            est, lo, up = _num(r["estimate"]), _num(r["lower"]), _num(r["upper"])
            nd, ed = domain(r["n"], cfg), domain(r["n_events"], cfg)
            if None in (est, lo, up) or nd is None:
                continue
            hw, dest = (up - lo) / 2, halfulp(r["estimate"])
            dhw = (halfulp(r["lower"]) + halfulp(r["upper"])) / 2
            sols = []
            for N in nd:
                e_dom = ed if ed is not None else range(0, N + 1)
                n1 = np.arange(1, N)[:, None]
                x1 = np.arange(0, N)[None, :]
                for E in e_dom:
                    x0 = E - x1
                    n0 = N - n1
                    valid = (x1 <= n1) & (x0 >= 0) & (x0 <= n0)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        p1, p0 = x1 / n1, x0 / n0
                        rd = p1 - p0
                        h = z * np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
                    ok = valid & (np.abs(rd - est) <= dest) & (np.abs(h - hw) <= dhw + 1e-9)
                    for a, b in zip(*np.nonzero(ok)):
                        sols.append((int(x1[0, b]), int(n1[a, 0]), int(E - x1[0, b]), int(N - n1[a, 0])))
            if not sols:
                continue
            where = f"row {i} ({r.get('site', r.get('site_id'))}, {r.get('outcome')})"
            what = ", ".join(f"{a}/{b} vs {c}/{d}" for a, b, c, d in sols[:3])
            _check(r["n"], [b + d for _, b, _, d in sols], cfg, t.file, where + " n",
                   "effect_ci", f"the risk difference and its Wald interval fit {what}", out)
            _check(r["n_events"], [a + c for a, _, c, _ in sols], cfg, t.file, where + " n_events",
                   "effect_ci", f"the risk difference and its Wald interval fit {what}", out)
            for j, lab in enumerate(("events, first arm", "n, first arm")):
                vals = [s[j] for s in sols]
                if len(set(vals)) == 1:
                    out.append(Finding(t.file, f"{where} {lab}", "effect_ci",
                                       f"hidden, the risk difference and its Wald interval fit "
                                       f"only {what}: pinned to {vals[0]}"))


def funnel_target(pub: Published, cfg, know, out: list[Finding]) -> None:
    """A funnel's target is the overall proportion; the overall counts are shown rounded."""
    for t in pub.find("analysis_funnel.csv"):
        for ind in dict.fromkeys(r["indicator"] for r in t.rows):
            rs = [r for r in t.rows if r["indicator"] == ind]
            if rs[0].get("limits_used") != "exact":
                continue
            target = _num(rs[0]["target"])
            if target is None:
                continue
            h = halfulp(rs[0]["target"])
            se_, sn_ = (sum(_num(r[c]) or 0 for r in rs) for c in ("events", "n"))
            if sn_ and abs(se_ / sn_ - target) <= h:
                continue  # the target of the published counts: it adds nothing
            nds = [domain(r["n"], cfg) for r in rs]
            eds = [domain(r["events"], cfg) for r in rs]
            if any(d is None for d in nds + eds):
                continue  # a suppressed site: its counts are unknown here
            nlo, nhi = sum(d.start for d in nds), sum(d.stop - 1 for d in nds)
            elo, ehi = sum(d.start for d in eds), sum(d.stop - 1 for d in eds)
            pairs = [(e, n) for n in range(max(nlo, 1), nhi + 1)
                     for e in range(max(elo, math.ceil((target - h) * n)),
                                    min(ehi, math.floor((target + h) * n)) + 1)]
            if not pairs:
                continue
            tot_n = sum(_num(r["n"]) for r in rs)
            _check(f"{int(tot_n)}", [n for _, n in pairs], cfg, t.file, f"{ind}: the sites' total n",
                   "funnel_target", f"the target {rs[0]['target']} = events / n of the exact "
                   "counts fits " + ", ".join(f"{e}/{n}" for e, n in pairs[:3]), out)


def funnel_flag(pub: Published, cfg, know, out: list[Finding]) -> None:
    """A binomial funnel's flags against the published counts, target and limits.

    A flag the published (rounded) counts give adds nothing. One they do not give was
    computed from other counts (the exact ones): the events and people of the site that
    put it on the flag's side of the limits (the limits published in the table: target,
    ``limits_used``, ``phi``, ``tau2``) are then all the attacker keeps."""
    from pipeline.stats.funnel_limits import funnel

    for t in pub.find("analysis_funnel.csv"):
        if not {"flag", "phi", "tau2", "limits_used", "target"} <= set(t.header):
            continue
        for ind in dict.fromkeys(r["indicator"] for r in t.rows):
            rs = [r for r in t.rows if r["indicator"] == ind and r.get("kind", "binomial")
                  == "binomial" and _num(r.get("events")) is not None
                  and _num(r.get("n")) is not None]
            if len(rs) < 2:
                continue
            used = rs[0]["limits_used"]
            target, phi, tau2 = (_num(rs[0][c]) for c in ("target", "phi", "tau2"))
            if target is None or not 0 < target < 1:
                continue
            sufs = {f.split("_", 1)[1] for f in (r["flag"] for r in rs) if "_" in f}
            levels = (0.95, 0.998) if sufs <= {"95", "998"} else None
            if levels is None:
                continue
            try:
                fr = funnel([_num(r["events"]) for r in rs], [_num(r["n"]) for r in rs],
                            kind="proportion", target=target, limits=levels,
                            overdispersion=None if used in ("exact", "normal") else used,
                            dispersion=(phi or 0.0, tau2 or 0.0))
            except Exception:  # noqa: BLE001 (not a funnel this attacker can redraw)
                continue
            for r, own in zip(rs, fr.table["flag"]):
                if r["flag"] == own:
                    continue  # the flag of the published counts: it adds nothing
                nd, ed = domain(r["n"], cfg), domain(r["events"], cfg)
                pairs = []
                for n in nd:
                    e = np.array([e for e in ed if e <= n], dtype=float)
                    if not e.size:
                        continue
                    fl = fr.limits_at(np.full(e.size, float(n)), e / n)["flag"]
                    pairs += [(int(x), n) for x, f in zip(e, fl) if f == r["flag"]]
                where = f"{ind}: site {r['site_id']}"
                why = (f"flagged {r['flag']} while its published counts are {own}: only "
                       + ", ".join(f"{e}/{n}" for e, n in pairs[:3]) + " fit")
                _check(r["events"], [e for e, _ in pairs], cfg, t.file, where + " events",
                       "funnel_flag", why, out)
                _check(r["n"], [n for _, n in pairs], cfg, t.file, where + " n", "funnel_flag",
                       why, out)


def dq_people(pub: Published, cfg, know, out: list[Finding]) -> None:
    """People per site in the data-quality report against the report's rounded people."""
    for rel, dq in pub.json.items():
        if not rel.endswith("data_quality.json") or not isinstance(dq, dict):
            continue
        for row in dq.get("sites") or []:
            if row.get("table") != "people" or not isinstance(row.get("n_clean"), int):
                continue
            n = row["n_clean"]
            dq_dom = set(domain(str(n), cfg)) if n % max(int(cfg.get("round_to") or 1), 1) == 0 \
                else {n}
            for t in pub.find("metrics_outcomes.csv"):
                for i, r in enumerate(t.rows, start=2):
                    if (r.get("dimension"), r.get("level"), r.get("arm"), r.get("outcome"),
                            r.get("metric")) != ("site", row["site_id"], "all", "relapse", "rate"):
                        continue
                    d = domain(r["n"], cfg)
                    if d is not None and set(d) & dq_dom:
                        _check(r["n"], set(d) & dq_dom, cfg, t.file, f"row {i} n (site {row['site_id']}, "
                               "both arms)", "dq_people", f"{rel} shows {n} clean people rows "
                               f"for the site", out)


def _milp_bounds(nvar: int, lb: list[float], ub: list[float], eqs: list[tuple[list[int], list[int]]],
                 objective: list[float]) -> tuple[float, float] | None:
    """min and max of ``objective . x`` over integer x in [lb, ub] with sum(x[plus]) -
    sum(x[minus]) == 0 for each (plus, minus) in ``eqs`` (HiGHS milp)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    A = np.zeros((len(eqs), nvar))
    for k, (plus, minus) in enumerate(eqs):
        A[k, plus] += 1
        A[k, minus] -= 1
    cons = [LinearConstraint(A, 0, 0)] if eqs else []
    res = []
    for sign in (1, -1):
        r = milp(sign * np.asarray(objective, float), constraints=cons,
                 integrality=np.ones(nvar), bounds=Bounds(lb, ub))
        if r.status != 0:
            return None
        res.append(sign * r.fun)
    return res[0], res[1]


def _grid_attack(file: str, cells: dict[Any, str], groups: list[tuple[Any, list[Any]]], cfg,
                 out: list[Finding], label, extra: dict[Any, set[int]] | None = None) -> None:
    """Each hidden cell and each group's sum of hidden cells, by integer programming over
    the additive groups ``(total cell, part cells)`` of a table."""
    keys = list(cells)
    ix = {k: i for i, k in enumerate(keys)}
    big = 10 ** 7
    lb, ub = [], []
    for k in keys:
        d = domain(cells[k], cfg, upper=big)
        if extra and k in extra and extra[k]:
            d = range(min(extra[k]), max(extra[k]) + 1)
        if d is None:
            lb.append(0); ub.append(big)
        else:
            lb.append(d.start); ub.append(d.stop - 1)
    eqs = [([ix[t]], [ix[p] for p in parts]) for t, parts in groups
           if t in ix and all(p in ix for p in parts)]
    if not eqs:
        return
    hidden = [k for k in keys if _num(cells[k]) is None]
    for k in hidden:
        obj = [0.0] * len(keys)
        obj[ix[k]] = 1.0
        b = _milp_bounds(len(keys), lb, ub, eqs, obj)
        if b is not None and b[1] < big / 2:
            _check(cells[k], range(int(round(b[0])), int(round(b[1])) + 1), cfg, file,
                   label(k), "hidden_sum", "the totals it adds up to", out)
    for t, parts in groups:
        hp = [p for p in parts if p in hidden]
        if len(hp) < 2 or t in hidden or t not in ix:
            continue
        obj = [0.0] * len(keys)
        for p in hp:
            obj[ix[p]] = 1.0
        b = _milp_bounds(len(keys), lb, ub, eqs, obj)
        if b is None or b[1] >= big / 2:
            continue
        lo, hi = int(round(b[0])), int(round(b[1]))
        if lo >= cfg["suppress_min"] and hi <= cfg["suppress_max"]:
            out.append(Finding(file, " + ".join(label(p) for p in hp), "hidden_sum",
                               f"hidden, but their sum is {lo if lo == hi else f'{lo}..{hi}'}: "
                               f"known and small (total {label(t)})"))


def hidden_sums(pub: Published, cfg, know, out: list[Finding]) -> None:
    """Table 1 levels to the arm's people; people per site and arm; data-quality flows."""
    for t in [*pub.find("analysis_table_one.csv"), *pub.find("table_one.csv")]:
        arms = list(dict.fromkeys(r["arm"] for r in t.rows))
        for var in dict.fromkeys(r["variable"] for r in t.rows if r.get("kind") == "n (%)"):
            for a in arms:
                pr = [r for r in t.rows if r["variable"] == "people" and r["arm"] == a]
                if not pr:
                    continue
                cells = {("people", a): pr[0]["n"]}
                parts = []
                for r in t.rows:
                    if r["variable"] == var and r["arm"] == a:
                        cells[(r["level"], a)] = r["n"]
                        parts.append((r["level"], a))
                ex = None
                k = _people_domain(pub, cfg, know, "site", "all", a) if "pooled" not in t.file else None
                if k:
                    ex = {("people", a): k}
                _grid_attack(t.file, cells, [(("people", a), parts)], cfg, out,
                             lambda key, var=var: f"{var}={key[0]}, {key[1]}" if key[0] != "people"
                             else f"people, {key[1]}", ex)
    for t in pub.find("analysis_missing_data.csv"):  # pipeline.analyses.sensitivity
        from pipeline.analyses.sensitivity import REASONS

        for i, r in enumerate(t.rows):
            cells = {(i, c): r.get(c, "") for c in ("people", "analysed",
                                                   "missing_or_cut_short", *REASONS)}
            groups = [((i, "missing_or_cut_short"), [(i, c) for c in REASONS])]
            if r.get("outcome", "").startswith("antipsychotic"):
                groups.append(((i, "people"), [(i, "analysed"), (i, "missing_or_cut_short")]))
            _grid_attack(t.file, cells, groups, cfg, out,
                         lambda k, r=r: f"{r.get('outcome')} {r.get('arm')} {k[1]}")
    for t in pub.find("people.csv"):
        cells = {(r["site_id"], r["arm"]): r["n"] for r in t.rows}
        sites = sorted({s for s, _ in cells if s != "all"})
        arms = sorted({a for _, a in cells if a != "all"})
        _grid_attack(t.file, cells, disclosure.grid_constraints(sites, arms), cfg, out,
                     lambda k: f"site {k[0]}, {k[1]}")
    for rel, dq in pub.json.items():
        if not rel.endswith("data_quality.json") or not isinstance(dq, dict):
            continue
        by_table: dict[str, dict] = {}
        for row in dq.get("sites") or []:
            by_table.setdefault(row["table"], {})[row["site_id"]] = row
        for table, rows in by_table.items():
            tot = (dq.get("tables") or {}).get(table)
            cells, groups = {}, []
            txt = lambda v: disclosure.SUPPRESSED if v is None else str(v)  # noqa: E731
            for s, row in rows.items():
                for kind in ("n_raw", "n_clean", "n_quarantined"):
                    cells[(s, kind)] = txt(row.get(kind))
                groups.append(((s, "n_raw"), [(s, "n_clean"), (s, "n_quarantined")]))
            if tot:
                for kind in ("n_raw", "n_clean", "n_quarantined"):
                    cells[("all", kind)] = txt(tot.get(kind))
                    groups.append((("all", kind), [(s, kind) for s in rows]))
                groups.append((("all", "n_raw"), [("all", "n_clean"), ("all", "n_quarantined")]))
            # the people table's rows are people, rounded as every count of people is
            # (dq_report.protect); the other tables' rows are exact
            kind_cfg = cfg if table == "people" else {**cfg, "round_to": 1}
            _grid_attack(rel, cells, groups, kind_cfg, out,
                         lambda k, table=table: f"{table} {k[0]} {k[1]}")


def exposed(pub: Published, cfg, know, out: list[Finding]) -> None:
    """Site estimates published while a count they rest on is hidden (the site's people
    in an arm in the main report; n or events in the pooled report)."""
    hidden_sites: dict[tuple[str, str], set[str]] = {}
    for t in pub.find("metrics_outcomes.csv"):
        for r in t.rows:
            if r.get("dimension") == "site" and r.get("arm") != "all" and \
                    r.get("metric") == "rate" and _num(r.get("n")) is None:
                hidden_sites.setdefault((r["outcome"], r["level"]), set()).add(r["arm"])
    for name, outcome in (("analysis_site_effects.csv", "relapse"),
                          ("analysis_fidelity_by_site_outcome.csv", "relapse")):
        for t in pub.find(name):
            for i, r in enumerate(t.rows, start=2):
                if (outcome, r.get("site_id")) in hidden_sites and _num(r.get("log_hr")) is not None:
                    out.append(Finding(t.file, f"row {i} ({r['site_id']})", "exposed",
                                       f"log hazard ratio {r['log_hr']} (se {r.get('se')}) shown "
                                       f"while the site's {outcome} counts are suppressed"))
    for t in pub.find("site_effects.csv"):
        for i, r in enumerate(t.rows, start=2):
            if _num(r.get("estimate")) is not None and any(
                    (r.get(c) or "").strip() == disclosure.SUPPRESSED for c in ("n", "n_events")):
                out.append(Finding(t.file, f"row {i} ({r.get('site')}, {r.get('outcome')})",
                                   "exposed", f"{r.get('measure')} {r['estimate']} shown while "
                                   "a count it rests on is suppressed"))


def curve_points(pub: Published, cfg, know, out: list[Finding]) -> None:
    """Curve points at 0% or 100% without an interval and without a flag."""
    for t in pub.find("metrics_outcomes.csv"):
        for i, r in enumerate(t.rows, start=2):
            if not r.get("ci_method", "").startswith(("Kaplan", "Aalen")):
                continue
            est = _num(r.get("estimate"))
            if est is None or r.get("flag"):
                continue
            if _num(r.get("lower")) is None and est in (0.0, 1.0):
                out.append(Finding(t.file, f"row {i} ({r.get('dimension')} {r.get('level')}, "
                                   f"{r.get('arm')}, {r.get('metric')})", "curve_no_interval",
                                   f"a curve from rounded counts shown as {100 * est:.0f}% with "
                                   "no interval and no flag"))


def injection(pub: Published, cfg, know, out: list[Finding]) -> None:
    """Text cells that a spreadsheet would run as a formula (OWASP CSV injection)."""
    from pipeline.output_policy import is_formula

    for file, cell, text in pub.text_cells(keys=True):
        if not is_formula(text):
            continue
        key = cell.startswith("key ")
        out.append(Finding(file, cell[:80] if key else cell, "injection",
                           "starts like a spreadsheet formula" if key
                           else f"{text[:30]!r} starts like a spreadsheet formula"))
    for t in pub.tables.values():
        for c in t.header:
            if is_formula(c):
                out.append(Finding(t.file, f"header {c[:30]!r}", "injection",
                                   "starts like a spreadsheet formula"))


def note_counts(pub: Published, cfg, know, out: list[Finding]) -> None:
    """Counts of people, rows, events or missing values written into free text (a note, a
    reason) that no rounding reached: a count the policy would not publish as it stands
    (small, or not on the rounding grid) is exact, and gives back whatever it is the
    complement of."""
    from pipeline.output_policy import _NOTE_COUNT, count

    def scan(file, cell, text):
        for m in _NOTE_COUNT.finditer(text):
            n = int(m.group(1).replace(",", ""))
            if n and count(n, cfg) != n:
                out.append(Finding(file, cell, "note_count",
                                   f"'{text[max(0, m.start() - 20):m.end() + 16]}': {n} is "
                                   "not a count the policy publishes (exact)"))

    for file, cell, text in pub.text_cells():
        table = file in pub.tables
        if " " in text and not (table and text[:1].isdigit()):   # a table's numbers: not text
            scan(file, cell if table else cell[:80], text)


#: In the order they run (later channels use what earlier ones learnt: arm sizes).
CHANNELS = (mean_denominator, smd, meta_regression, effect_ci, funnel_target, funnel_flag,
            dq_people, hidden_sums, exposed, curve_points, injection, note_counts)


def attack(*roots: Path, cfg: dict[str, Any] | None = None) -> list[Finding]:
    """Every finding over the published files under ``roots`` (sorted, no duplicates)."""
    cfg = {**disclosure.DEFAULTS, **(cfg or {})}
    pub = Published.read(*roots)
    know: dict = {}
    out: list[Finding] = []
    for ch in CHANNELS:
        ch(pub, cfg, know, out)
    return sorted(set(out), key=lambda f: (f.file, f.channel, f.cell, f.detail))

