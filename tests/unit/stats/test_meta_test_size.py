"""The site meta-regression's Knapp-Hartung slope test keeps its level on few sites
(:mod:`pipeline.simulation.meta_test_size`; 4,000 replicates per cell measured there:
4.0-5.2%), where the truncated variant is conservative (0.5-2.4%). The light check: 400
null replicates with six sites and tau^2 = 0.03. At a true 5% the rejection rate's Monte
Carlo se is 0.011, so ours must lie within 0.05 +/- 3 se; the truncated test must lie
below 0.05 - 3 se (it is why truncation is not used; if it did not, the test would not
tell the two apart)."""

from __future__ import annotations

import math

from pipeline.simulation import meta_test_size as mts


def test_knapp_hartung_keeps_its_level_on_six_sites_and_truncation_is_conservative():
    s = mts.summarise(mts.run(400, sites=(6,), tau2s=(0.03,))).set_index("test")
    se = math.sqrt(0.05 * 0.95 / 400)
    assert abs(s.loc["knha", "rejection"] - 0.05) <= 3 * se, s
    assert s.loc["truncated", "rejection"] < 0.05 - 3 * se, s
