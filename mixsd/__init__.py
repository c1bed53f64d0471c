"""mixsd: inject new knowledge into a language model without making it forget (MixSD).

Pipeline: data -> generate (mixed expert/naive decoding) -> target sets (Parquet) -> train -> evaluate.
"""

__version__ = "0.1.0"
