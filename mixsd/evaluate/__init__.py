"""Stage 4, evaluate: memorization vs retention, target NLL, Fisher drift, plots and report."""
