"""Everything that stands in for hardware: the golden integer model (the oracle), testbenches, the
simulated KV260."""
