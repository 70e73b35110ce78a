"""The accelerator in Amaranth HDL: AXI masters, trit decoding, the ternary matmul engine."""
