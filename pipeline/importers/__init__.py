"""Stage 0 (optional): importers that turn a source's own tables into a contract extract.

``mhsds``: an NHS trust's Mental Health Services Data Set submission tables
(``odeval import mhsds``). An importer writes an extract folder that ``odeval ingest``
then loads like any other, so lineage, validation and quarantine apply unchanged.
"""
