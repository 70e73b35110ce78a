"""Bit-exact integer arithmetic of the fabric (docs/numerics.md): pseudo-float scales, fixed-point
requantization, activation quantization, tables."""
