"""segcli benchmarks: run each script as `python benchmarks/NAME.py` (see README.md here)."""
