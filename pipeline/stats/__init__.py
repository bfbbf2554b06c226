"""Statistics for Open Dialogue evaluations, independent of the warehouse.

Every estimator takes a data frame (or arrays) and returns a result object with a tidy
``summary`` or ``table``, ``notes`` and ``_repr_html_``; each is checked against R on
public datasets (``tests/reference/``) and against planted truth in the synthetic study.
"""
