"""deploy: how a bsemu run is launched (the `bsemu` command line, YAML configs, run folders, sweeps, cluster
recipes)."""

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""The BLAS / OpenMP thread counts the command line caps at 1 before numpy loads (and hands to Ray tasks)."""
