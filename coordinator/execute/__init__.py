"""The execution phase: trained policies (or classical solvers) run slot by slot on BS actors, on the wall clock."""
