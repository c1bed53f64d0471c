"""Stage 2, generate: the mixing core, the transformers and vLLM engines, and the stage runner."""
