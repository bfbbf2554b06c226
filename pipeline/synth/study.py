"""Study-level structure of the synthetic study: calendar, sites, clusters, staff, drugs.

Everything here is drawn once per study from the first child of
``SeedSequence(seed)``; the per-person simulation (:mod:`pipeline.synth.simulate`) reads
it and never changes it.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import PROJ_ROOT
from pipeline.schemas import load_contract
from pipeline.synth.params import Effects

#: People simulated per chunk. A constant (not a tuning knob): the output depends on the
#: seed and the number of people only, never on memory or processing order.
CHUNK_PEOPLE = 5000

EPOCH = dt.date(1970, 1, 1)
#: The extract date: the last day any record can carry (data_end_date of everyone not
#: transferred out). Validation should use it as ``validate.extract_date``.
EXTRACT_DATE = dt.date(2025, 3, 31)
FOLLOW_UP_DAYS = 730
#: Start of the 2-year window for return to work or education (contract: days 640..730).
RTW_WINDOW_START = 640

DRUG_LIST = PROJ_ROOT / "pipeline" / "reference" / "antipsychotics.csv"

# ---- semantic groups named by the contract (checked against the schema vocabularies) ----
CLINICAL_ROLES = ("psychiatrist", "nurse", "psychologist", "social_worker", "occupational_therapist")
WORK_STATUSES = ("employed", "self_employed", "education", "training")
INVOLUNTARY_SECTIONS = ("2", "3", "4", "37")
PLACE_OF_SAFETY_SECTIONS = ("135", "136")
HOLDING_POWER_SECTIONS = ("5(2)", "5(4)")
#: The default outcome definitions the planted truth follows (params.yaml derive:): acute-care
#: records start a new episode more than EPISODE_GAP_DAYS after the episode's end, Mental
#: Health Act detentions more than DETENTION_GAP_DAYS after it.
EPISODE_GAP_DAYS = 2
DETENTION_GAP_DAYS = 1

#: Real psychotropics that are deliberately absent from the reference list (used only for
#: the planted "unknown drug" prescriptions; the first ones not in the list are used).
UNKNOWN_DRUG_CANDIDATES = ("asenapine", "benperidol", "loxapine", "sertindole", "melperone",
                           "promethazine", "prochlorperazine")


def day_number(d: dt.date) -> int:
    return (d - EPOCH).days


def vocab(table: str, column: str) -> tuple[str, ...]:
    col = load_contract()[table].column(column)
    if col.vocabulary is None:
        raise ValueError(f"{table}.{column} has no vocabulary")
    return col.vocabulary


def vocab_probs(table: str, column: str, weights: dict[str, float],
                others: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(values, probabilities) over the schema vocabulary of ``table.column``.

    ``weights`` gives realistic weights for named values (each must be in the vocabulary);
    every other vocabulary value gets weight ``others``, so a value added to the schema
    still appears when ``others`` > 0.
    """
    values = vocab(table, column)
    bad = set(weights) - set(values)
    if bad:
        raise ValueError(f"{table}.{column}: {sorted(bad)} not in the schema vocabulary {values}")
    w = np.array([weights.get(v, others) for v in values], dtype=float)
    return np.array(values, dtype=object), w / w.sum()


def check_groups() -> None:
    """The semantic groups above must be subsets of the schema vocabularies."""
    for group, (t, c) in ((CLINICAL_ROLES, ("staff", "role")),
                          (WORK_STATUSES, ("employment", "status")),
                          (INVOLUNTARY_SECTIONS, ("detentions", "legal_section")),
                          (PLACE_OF_SAFETY_SECTIONS, ("detentions", "legal_section")),
                          (HOLDING_POWER_SECTIONS, ("detentions", "legal_section"))):
        missing = set(group) - set(vocab(t, c))
        if missing:
            raise ValueError(f"{t}.{c}: vocabulary lacks {sorted(missing)}")


@dataclass
class Drugs:
    """The reference drug list, read from pipeline/reference/antipsychotics.csv."""

    rows: list[dict]
    unknown: tuple[str, ...]

    @classmethod
    def load(cls, path: Path = DRUG_LIST) -> "Drugs":
        if not path.exists():
            raise FileNotFoundError(f"{path}: the reference drug list is needed to generate prescriptions")
        with path.open(encoding="utf-8", newline="") as f:
            rows = [r for r in csv.DictReader(f)]
        names = {r["drug"] for r in rows}
        unknown = tuple(d for d in UNKNOWN_DRUG_CANDIDATES if d not in names)[:3]
        if not unknown:
            unknown = ("unlisted_psychotropic",)
        return cls(rows=rows, unknown=unknown)

    def pick(self, *, antipsychotic: bool, route: str, weights: dict[str, float],
             others: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(names, probabilities, typical daily dose mg) among list rows of that kind.

        Rows not named in ``weights`` get weight ``others``; named drugs that the list does
        not hold are ignored (so the list decides what exists).
        """
        sel = [r for r in self.rows
               if (r["antipsychotic"].strip().lower() == "true") == antipsychotic
               and r["route"].strip().lower() == route]
        if not sel:
            raise ValueError(f"reference list has no {'antipsychotic' if antipsychotic else 'other'} "
                             f"drug with route {route}")
        names = np.array([r["drug"] for r in sel], dtype=object)
        w = np.array([weights.get(r["drug"], others) for r in sel], dtype=float)
        if w.sum() == 0:
            w[:] = 1.0
        ddd = np.array([float(r["ddd_mg"]) if r["ddd_mg"].strip() else TYPICAL_DOSE.get(r["drug"], 100.0)
                        for r in sel])
        return names, w / w.sum(), ddd


#: Typical daily dose where the list has no DDD in mg (lithium: 24 mmol DDD).
TYPICAL_DOSE = {"lithium": 800.0}


@dataclass
class Study:
    """Study-level draws; see module docstring."""

    people: int
    sites: int
    seed: int
    design: str
    effects: Effects
    staggered: bool = False                # each person's own data_end_date (see build_study)
    site_ids: list[str] = field(default_factory=list)
    site_weight: np.ndarray = None
    site_start: np.ndarray = None          # first recruitment day (days since epoch)
    site_logfrailty: np.ndarray = None
    site_poor: np.ndarray = None           # bool: poor-fidelity site
    cluster_ids: list[str] = field(default_factory=list)
    cluster_site: np.ndarray = None
    cluster_arm: np.ndarray = None         # 1 = open_dialogue
    cluster_weight: np.ndarray = None      # within its site
    cluster_logfrailty: np.ndarray = None
    cluster_rtw_logit: np.ndarray = None   # cluster effect on the log-odds of rtw_2y
    fidelity: dict = field(default_factory=dict)   # name -> array [site, arm]
    staff: dict = field(default_factory=dict)      # columns of the staff table
    pool_start: np.ndarray = None          # [site, arm] offset into pool_clin
    pool_size: np.ndarray = None
    pool_clin: np.ndarray = None           # staff row indices of clinicians, pooled by (site, arm)
    peer_start: np.ndarray = None
    peer_size: np.ndarray = None
    pool_peer: np.ndarray = None
    drugs: Drugs = None
    extract_day: int = 0
    recruit_start: int = 0
    recruit_end: int = 0
    chunk_seeds: list = field(default_factory=list)
    fault_seeds: list = field(default_factory=list)
    study_fault_seed: object = None
    id_width: int = 7

    @property
    def n_chunks(self) -> int:
        return (self.people + CHUNK_PEOPLE - 1) // CHUNK_PEOPLE


FIDELITY_NAMES = {
    "p1_first_meeting_24h": "P(first network meeting within 24 h of received_at) [od arm; the first od "
                            "contact is an attended network meeting]",
    "p2_network_present": "P(network_members_present >= 1) per attended network meeting",
    "p3_home_or_choice": "P(location in home, place_of_choice) per network meeting",
    "p4_first_contact_at_first_meeting": "P(first_contact_staff_id among the staff of the first network "
                                         "meeting) [od arm, referrals with first_contact_staff_id]",
    "p5a_two_clinicians": "P(>= 2 clinical staff) per network meeting",
    "p5b_core_continuity": "P(each clinical staff slot is filled by the person's core team) per contact",
    "p5c_peer_worker": "P(a peer worker present) per network meeting",
    "p7_person_present": "P(person_present) per attended network meeting",
    "discharge_by_network": "P(discharge_decided_by = network | discharged by the service)",
}


def _clusters_per_site(people: int, sites: int) -> int:
    if people < 20000:
        total = int(np.clip(people // 100, 6, 30))
    else:
        total = int(min(people // 1000, 3000))
    return max(2, int(round(total / sites)))


def build_study(*, people: int, sites: int, seed: int, design: str, effects: Effects,
                staggered: bool = False) -> Study:
    """The study-level draws. ``staggered``: a trial with staggered entry that follows each
    person for their own two years, the extract taken a month after the last of them ends:
    every data_end_date is the person's own (index + 730 days, or earlier on transfer out),
    none is the extract date."""
    check_groups()
    root = np.random.SeedSequence(seed)
    study_ss, chunks_ss, faults_ss, study_faults_ss = root.spawn(4)
    rng = np.random.default_rng(study_ss)
    st = Study(people=people, sites=sites, seed=seed, design=design, effects=effects,
               staggered=staggered)
    st.id_width = max(7, len(str(people)))
    st.chunk_seeds = chunks_ss.spawn(st.n_chunks)
    st.fault_seeds = faults_ss.spawn(st.n_chunks)
    st.study_fault_seed = study_faults_ss
    e = effects

    st.extract_day = day_number(EXTRACT_DATE)
    follow = max(int(e.min_follow_up_days), FOLLOW_UP_DAYS + 30) if staggered \
        else int(e.min_follow_up_days)
    st.recruit_end = st.extract_day - follow
    st.recruit_start = st.recruit_end - int(e.recruitment_days)

    width = max(2, len(str(sites)))
    st.site_ids = [f"S{s + 1:0{width}d}" for s in range(sites)]
    st.site_weight = rng.dirichlet(np.full(sites, 4.0)) if sites > 1 else np.ones(1)
    offs = rng.uniform(0, 0.4 * e.recruitment_days, sites)
    offs[0] = 0.0
    st.site_start = st.recruit_start + np.floor(offs).astype(np.int64)
    st.site_logfrailty = rng.normal(0.0, np.sqrt(e.site_frailty_var), sites)
    n_poor = int(round(e.poor_fidelity_share * sites))
    if sites >= 3 and e.poor_fidelity_share > 0:
        n_poor = max(1, n_poor)
    poor = np.zeros(sites, bool)
    poor[rng.permutation(sites)[:n_poor]] = True
    st.site_poor = poor

    # clusters (GP practices) nested in sites, half of each site's clusters per arm
    k = _clusters_per_site(people, sites)
    cl_site, cl_arm, cl_w, cl_ids = [], [], [], []
    for s in range(sites):
        arms = np.zeros(k, np.int8)
        arms[rng.permutation(k)[: k // 2 + (rng.random() < 0.5 if k % 2 else 0)]] = 1
        cl_site += [s] * k
        cl_arm += list(arms)
        cl_w += list(rng.dirichlet(np.full(k, 3.0)))
        cl_ids += [f"{st.site_ids[s]}-GP{j + 1:02d}" for j in range(k)]
    st.cluster_ids = cl_ids
    st.cluster_site = np.array(cl_site)
    st.cluster_arm = np.array(cl_arm, np.int8)
    st.cluster_weight = np.array(cl_w)
    st.cluster_logfrailty = rng.normal(0.0, np.sqrt(e.cluster_frailty_var), len(cl_ids))
    # its own stream (a fixed spawn key no sequential spawn reaches), so that every other
    # draw of the study, and every study made before it, stays as it was
    st.cluster_rtw_logit = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(100,))).normal(
        0.0, np.sqrt(e.rtw_cluster_logit_var), len(cl_ids))

    # fidelity: data-generating probabilities per site and arm (column 0 uc, 1 od)
    def lvl(good: tuple, bad: tuple, uc: float | None) -> np.ndarray:
        a = np.empty((sites, 2))
        a[:, 1] = np.where(poor, rng.uniform(*bad, sites), rng.uniform(*good, sites))
        a[:, 0] = np.nan if uc is None else uc
        return np.round(a, 3)

    st.fidelity = {
        "p1_first_meeting_24h": lvl((0.75, 0.95), (0.2, 0.45), None),
        "p2_network_present": lvl((0.75, 0.95), (0.4, 0.6), 0.15),
        "p3_home_or_choice": lvl((0.65, 0.9), (0.15, 0.35), 0.2),
        "p4_first_contact_at_first_meeting": lvl((0.75, 0.95), (0.4, 0.6), None),
        "p5a_two_clinicians": lvl((0.8, 0.95), (0.4, 0.6), 0.3),
        "p5b_core_continuity": lvl((0.8, 0.95), (0.5, 0.7), 0.7),
        "p5c_peer_worker": lvl((0.35, 0.6), (0.02, 0.1), 0.02),
        "p7_person_present": lvl((0.85, 0.97), (0.6, 0.8), 0.7),
        "discharge_by_network": lvl((0.5, 0.8), (0.1, 0.3), 0.03),
    }

    # staff register: one clinical team per site and arm, plus peer and support workers
    roles_v, roles_p = vocab_probs("staff", "role", {
        "psychiatrist": 0.15, "nurse": 0.4, "psychologist": 0.12, "social_worker": 0.18,
        "occupational_therapist": 0.15})  # clinical roles only; others added below
    staff_site, staff_role, staff_od = [], [], []
    pool_start = np.zeros((sites, 2), np.int64)
    pool_size = np.zeros((sites, 2), np.int64)
    peer_start = np.zeros((sites, 2), np.int64)
    peer_size = np.zeros((sites, 2), np.int64)
    pool_clin, pool_peer = [], []
    for s in range(sites):
        for arm in (0, 1):
            expected = people * st.site_weight[s] * 0.5
            m = int(np.clip(round(expected / 35), 8, 20000))
            base = len(staff_site)
            pool_start[s, arm] = len(pool_clin)
            pool_size[s, arm] = m
            pool_clin += list(range(base, base + m))
            staff_site += [s] * m
            staff_role += list(rng.choice(roles_v, size=m, p=roles_p))
            trained_p = (0.6 if poor[s] else 0.9) if arm == 1 else 0.05
            staff_od += list(rng.random(m) < trained_p)
            n_peer = (1 if poor[s] else max(2, m // 6)) if arm == 1 else max(1, m // 15)
            peer_start[s, arm] = len(pool_peer)
            peer_size[s, arm] = n_peer
            base = len(staff_site)
            pool_peer += list(range(base, base + n_peer))
            staff_site += [s] * n_peer
            staff_role += ["peer_worker"] * n_peer
            staff_od += list(rng.random(n_peer) < trained_p)
            extra_roles = [r for r in vocab("staff", "role") if r not in CLINICAL_ROLES and r != "peer_worker"]
            n_extra = max(1, m // 8)
            staff_site += [s] * n_extra
            staff_role += list(rng.choice(np.array(extra_roles, dtype=object), size=n_extra))
            staff_od += list(rng.random(n_extra) < trained_p / 2)
    n_staff = len(staff_site)
    od_trained = np.array(staff_od, dtype=object)
    od_trained[rng.random(n_staff) < 0.05] = None  # optional column: sometimes not recorded
    sw = max(5, len(str(n_staff)))
    st.staff = {
        "staff_id": [f"T{i + 1:0{sw}d}" for i in range(n_staff)],
        "site_id": [st.site_ids[s] for s in staff_site],
        "role": [str(r) for r in staff_role],
        "od_trained": list(od_trained),
    }
    st.pool_start, st.pool_size, st.pool_clin = pool_start, pool_size, np.array(pool_clin, np.int64)
    st.peer_start, st.peer_size, st.pool_peer = peer_start, peer_size, np.array(pool_peer, np.int64)
    st.drugs = Drugs.load()
    return st
