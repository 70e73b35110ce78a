"""cocotb + Verilator testbench support: Amaranth-to-Verilog builds (:mod:`.build`), AXI memory
models (:mod:`.axi`) and the testbench modules (``tb_*.py``) that the pytest wrappers run."""
