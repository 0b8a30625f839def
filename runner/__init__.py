"""The notebook runner: runs a parameterised notebook under its own identity, checks what it wrote, and
publishes exactly what passed the check. One module per step; run.py drives them and finishes the run."""
