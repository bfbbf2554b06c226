"""Synthetic multi-site Open Dialogue study with planted truth (``odeval synth``)."""

from pipeline.synth.generate import generate_study

__all__ = ["generate_study"]
