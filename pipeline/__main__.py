"""``python -m pipeline ARGS`` runs the ``odeval`` command line (as the console script does)."""

from pipeline.cli import main

main()
