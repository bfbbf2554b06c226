"""odeval: evaluation pipeline for Open Dialogue services and trials."""
__version__ = "0.1.0"
