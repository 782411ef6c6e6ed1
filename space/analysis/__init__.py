"""Reading results: bench specs and reports, run comparison, plots and statistics."""
