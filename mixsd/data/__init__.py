"""Stage 1, data: input records and their readers, prompt templates, synthetic corpora, local models."""
