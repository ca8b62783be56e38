"""What a chapter measures beyond training: exact experiments on small MDPs, sweeps, ablations."""
