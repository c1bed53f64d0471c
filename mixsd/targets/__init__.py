"""Target sets: the Parquet interchange format between generate and train (and between teams).

Schema v1 (`schema`), provenance and fingerprints (`provenance`), atomic shard-safe writing
(`writer`), streaming reading (`reader`), what a complete set holds (`completeness`), checks
(`validate`), and set operations (`summary`, `ops`). Imports neither generate nor train: both import it.
"""
