"""Verilator models driven by C++ harnesses (fast enough for full-size matrices).

``engine_bench``: the matmul engine with a C++ AXI4 memory model per port (harness_engine.cpp),
every output checked against the golden matvec.
"""
