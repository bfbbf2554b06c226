"""Simulation studies from the synthetic generator's model.

* :mod:`pipeline.simulation.draw`: a fast person-level draw from the generator's
  data-generating model, with design shapes (sites, clusters per arm, cluster sizes,
  recruitment imbalance, cluster variance);
* :mod:`pipeline.simulation.methods`: the candidate analyses of each outcome, one function
  per method, each returning estimate, interval and p-value on the analysis scale;
* :mod:`pipeline.simulation.study`: the simulation study that chooses the default
  few-cluster method per design shape (replicates cached on disk, resumable, at most two
  processes);
* :mod:`pipeline.simulation.defaults`: the choice it made, as data the analysis plan reads.
"""
