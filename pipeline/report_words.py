"""Words for readers of the report: labels in place of column codes, p-values and numbers
formatted as a journal prints them, and the glossary of the statistical terms a report
uses. Plain functions of text and numbers (no warehouse), so each is unit-tested on its own
(tests/unit/test_report_words.py)."""

from __future__ import annotations

import html as htmllib
import math
import re

#: Column codes and method codes that reach the report's text (estimands, methods, notes,
#: the plan, Table 1, figure legends) and what a reader sees in their place. Replaced as
#: whole words only, and not after a dot (``people.cluster_id`` names a column on purpose).
LABELS = {
    # arms
    "open_dialogue": "Open Dialogue", "usual_care": "usual care",
    # covariates and Table 1 variables
    "age_at_index": "age at referral", "diagnosis_group": "diagnosis group",
    "prior_admissions_2y": "admissions in the 2 years before referral",
    "ethnicity_group": "ethnicity group", "baseline_activity": "activity at referral",
    "site_id": "site", "cluster_id": "cluster", "list_size": "practice list size",
    "imd_decile": "deprivation decile (IMD)", "people_per_cluster": "people per cluster",
    # employment statuses (the contract's vocabulary)
    "carer_homemaker": "carer or homemaker", "long_term_sick": "long-term sick",
    "self_employed": "self-employed",
    # outcomes
    "involuntary_admission": "involuntary admissions",
    "antipsychotic_any": "any antipsychotic use",
    "antipsychotic_last_days": "antipsychotic use at the end of follow-up",
    "return_to_work": "in work or education at 2 years",
    # methods
    "knha": "Hartung-Knapp", "negbin": "negative binomial",
}


def _fidelity_labels() -> dict[str, str]:
    from pipeline.metrics import FIDELITY_LABELS

    return {k: v[1][:1].lower() + v[1][1:] for k, v in FIDELITY_LABELS.items()}


_SYMBOLS = ((re.compile(r"\btau\^2\b"), "τ²"), (re.compile(r"\bI\^2\b"), "I²"),
            (re.compile(r"\bR\^2\b"), "R²"), (re.compile(r"\bwith od\b"), "with the arm"))


def label(code: str) -> str:
    """What a reader sees for one code: its label, else the code with spaces for ``_``."""
    code = str(code)
    words = {**LABELS, **_fidelity_labels()}
    return words.get(code, code.replace("_", " "))


def reader(text) -> str:
    """``text`` with every known code replaced by its label (whole words, not after a dot)
    and ``tau^2``, ``I^2``, ``R^2`` as symbols. Not escaped: see :func:`words`."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    s = str(text)
    words = {**LABELS, **_fidelity_labels()}
    s = re.sub(r"(?<![.\w])(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True))
               + r")(?!\w)", lambda m: words[m.group(1)], s)
    for pat, sym in _SYMBOLS:
        s = pat.sub(sym, s)
    return s


def words(text) -> str:
    """:func:`reader` then HTML-escaped."""
    return htmllib.escape(reader(text))


def sentence(text) -> str:
    """``text`` as one sentence: stripped, a capital first letter and a full stop at the end
    (so that "conditional on site" and "Method: ..." do not run together)."""
    s = str(text or "").strip()
    if not s:
        return ""
    s = s[:1].upper() + s[1:]
    return s if s.endswith((".", "!", "?")) else s + "."


def p_value(p) -> str:
    """A p-value as a reader wants it, without "p": "< 0.001", "0.003" (3 decimals below
    0.01), "0.049" (2 significant digits below 0.1, so 0.049 is not printed as 0.05),
    "0.13", "> 0.99"; "" when missing."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    if p < 0.01:
        return f"{p:.3f}"
    if p < 0.1:
        return f"{p:.2g}"
    if p > 0.99:
        return "> 0.99"
    return f"{p:.2f}"


def p_text(p) -> str:
    """"p < 0.001", "p = 0.013", "p = 0.13", "p > 0.99"; "" when missing."""
    v = p_value(p)
    if not v:
        return ""
    return f"p {v}" if v[0] in "<>" else f"p = {v}"


def integral_summary(summary: str) -> str:
    """A "median [IQR]" (or any) summary whose numbers are all whole: the numbers as
    integers ("0.0 [0.0, 1.0]" -> "0 [0, 1]"); else unchanged."""
    nums = re.findall(r"-?\d+(?:\.\d+)?", summary)
    if not nums or any(float(n) != int(float(n)) for n in nums):
        return summary
    return re.sub(r"-?\d+(?:\.\d+)?", lambda m: str(int(float(m.group(0)))), summary)


def unit_digits(unit: str) -> int:
    """Decimals for an estimate in ``unit``: mg a day (chlorpromazine equivalents) as whole
    milligrams, days to one decimal, rates per person-year and DDDs to two."""
    return {"mg/day": 0, "days": 1}.get(str(unit), 2)


#: (term, definition, words that show the term is used in the report). The glossary lists
#: the terms whose words appear in the report, in this order.
GLOSSARY = [
    ("95% confidence interval (CI)", "The range of values of the true effect that the data "
     "are compatible with: computed the same way in many studies, 95% of such intervals would "
     "contain the true value. A wide interval means the study cannot tell the values in it "
     "apart.", ("confidence interval", "95% CI")),
    ("p-value", "How often a difference at least as large as the one seen would arise by chance "
     "if there were truly no difference. A small p-value is evidence against no difference; a "
     "large one is not evidence of no difference.", ("p = ", "p &lt; ", "p-value")),
    ("Hazard ratio", "The ratio of the rates at which first events happen in the two arms at "
     "any moment among people still at risk; below 1 means events happen more slowly with Open "
     "Dialogue.", ("hazard ratio",)),
    ("Rate ratio", "The ratio of the numbers of events per person-year in the two arms.",
     ("rate ratio",)),
    ("Risk difference and risk ratio", "The difference (in percentage points) and the ratio of "
     "the shares of people with the outcome in the two arms.", ("risk difference",
                                                                "risk ratio")),
    ("Kaplan-Meier estimate", "The share of people still free of the event by each day, "
     "allowing for people whose follow-up ended earlier (censoring).", ("Kaplan-Meier",)),
    ("Cumulative incidence (Aalen-Johansen)", "The share of people who have had the event by "
     "each day when another event (death) can prevent it: a competing event. Kaplan-Meier "
     "treats deaths as censored and so overstates the share.", ("Aalen-Johansen",
                                                                "cumulative incidence")),
    ("Estimand", "The precise quantity an analysis estimates: the population, the outcome, the "
     "comparison and how events such as death are handled.", ("Estimand",)),
    ("Cluster-randomised trial", "A trial that randomises groups (here GP practices or teams), "
     "not people; people in a cluster resemble each other, so the analysis must count "
     "clusters, not only people.", ("Cluster-randomised", "cluster-randomised")),
    ("Cluster-level analysis", "An analysis of one summary per cluster (observed against "
     "expected events), compared between the arms with a t-test: valid with few clusters.",
     ("cluster-level analysis",)),
    ("Cluster-robust (sandwich) standard error, CR2", "A standard error that allows people in "
     "a cluster to be alike; CR2 (Bell-McCaffrey) corrects its bias with few clusters, and "
     "Satterthwaite degrees of freedom (df) widen the interval to match.", ("CR2", "sandwich")),
    ("Degrees of freedom (df)", "How much independent information a test has; with few "
     "clusters it is small and the t distribution widens the interval.", (" df",)),
    ("Intracluster correlation (ICC) and frailty variance", "How much more alike two people in "
     "the same cluster are than two people in different clusters (0: no more alike).",
     ("ICC", "frailty")),
    ("Standardised mean difference (SMD)", "The difference between the arms in a "
     "characteristic in units of its standard deviation; below 0.1 is usually read as "
     "negligible imbalance.", ("SMD",)),
    ("Fixed-sequence (hierarchical) testing", "Secondary outcomes tested one by one in the "
     "order declared before the analysis, each only if every test before it rejected, which "
     "keeps the chance of any false positive at 5%. An outcome the sequence does not reach is "
     "descriptive only.", ("fixed sequence", "hierarchical")),
    ("Holm's method", "Adjusted p-values over the secondary outcomes that keep the chance of any "
     "false positive at 5%.", ("Holm",)),
    ("Interaction test", "Whether the effect differs between subgroups; the estimates within "
     "subgroups are description.", ("interaction",)),
    ("Random-effects meta-analysis", "Pools the sites' estimates allowing each site its own "
     "true effect around a mean; τ² is the variance of the true effects between sites, I² the "
     "share of the variation between sites beyond chance, and REML the way τ² is estimated.",
     ("random effects", "random-effects")),
    ("Hartung-Knapp test", "A test of the pooled estimate that uses a t distribution and the "
     "observed spread of the sites: reliable with few sites.", ("Hartung-Knapp",)),
    ("Prediction interval", "Where the effect in a new site is expected to lie, given the "
     "spread between sites (wider than the CI of the mean).", ("prediction interval",)),
    ("Funnel plot and control limits", "Each site's percent against its number of people; the "
     "lines are where 95% and 99.8% of sites would fall if they differed only by chance.",
     ("Funnel plot", "funnel plot")),
    ("Meta-regression", "A regression of the sites' effects on a characteristic of the sites "
     "(here fidelity); with few sites it describes, it does not prove.", ("meta-regression",)),
    ("Multiple imputation", "Missing values filled in many times from a model of the observed "
     "data, each completed dataset analysed and the results combined (Rubin's rules).",
     ("multiple imputation", "Multiple imputation")),
    ("Tipping-point analysis", "How far the missing values would have to differ from the "
     "observed ones (delta) before the conclusion changes.", ("Tipping-point", "tipping")),
    ("Propensity score weighting", "In an observational comparison, people weighted by the "
     "inverse of their probability of being in the arm they are in, given measured "
     "characteristics, so that the arms resemble each other on them. Unmeasured differences "
     "remain.", ("propensity",)),
    ("E-value", "How strongly an unmeasured confounder would have to be associated with both "
     "arm and outcome to explain the observed association away.", ("E-value",)),
    ("Suppression and rounding", "Disclosure control: small counts are hidden ([c]) and other "
     "counts rounded so that no person can be identified; totals may not add up.",
     ("Disclosure control",)),
]


def glossary_html(report_text: str) -> str:
    """The glossary section for a report whose HTML is ``report_text``: the terms it uses."""
    used = [(t, d) for t, d, cues in GLOSSARY if any(c in report_text for c in cues)]
    if not used:
        return ""
    items = "".join(f"<dt>{htmllib.escape(t)}</dt><dd>{htmllib.escape(d)}</dd>"
                    for t, d in used)
    return ("<h2 id='glossary'>Glossary</h2><p>The statistical terms this report uses, in "
            f"plain words.</p><dl class='glossary'>{items}</dl>")
