"""The virtual KV260: the accelerator in Verilator on a calibrated model of the PS memory system."""
