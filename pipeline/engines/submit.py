"""Entry point for ``spark-submit`` (a cluster, or a Databricks "Python script" task).

    spark-submit --py-files odeval.whl pipeline/engines/submit.py \\
        /data/extract [/data/extract2 ...] --out /data/odeval --params params.yaml

Types, validates and derives the extract folders on the cluster's session (its master and
settings win) and writes Parquet under ``--out`` (:func:`pipeline.engines.spark.run`);
prints the run summary as JSON. Exit status 2 with the message on a refused extract or a
quarantine share above its threshold, as ``odeval run``.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.errors import OdevalError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="odeval-spark", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="extract folders (one file per contract table)")
    parser.add_argument("--out", required=True, help="output folder for the Parquet tables")
    parser.add_argument("--params", default=None, help="params.yaml [default: the project's]")
    args = parser.parse_args(argv)

    from pipeline.engines import engine_settings
    from pipeline.engines import spark as engine
    from pipeline.params import load_params

    try:
        params = load_params(args.params)
        settings = engine_settings(params, "spark")
        summary = engine.run(engine.session(settings["spark_master"], settings["spark_conf"]),
                             args.folders, args.out, params)
    except OdevalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover - spark-submit runs the file
    sys.exit(main())
