"""The real backend: the port over mtx, mt-st, sg3-utils and LTFS, run through one Runner."""
