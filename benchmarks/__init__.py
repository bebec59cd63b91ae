"""asv benchmark suite (asv.conf.json at the top level): backends.py measures latency, throughput,
accuracy and build cost per model x backend x batch size; columns_vs_packing.py is a plain script."""
