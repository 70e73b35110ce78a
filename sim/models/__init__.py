"""Bus and memory models for the Amaranth simulator (cocotb models live in sim/cocotb/)."""
