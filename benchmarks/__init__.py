"""asv benchmark suite (filled in by the asv issue): per-backend latency, throughput, accuracy and build cost."""
