"""`make bench`: the gateway's performance figures, each measured side by side with its baseline (bench/run.py)."""
