"""The host runtime: device backends (ref today; sim and kv260 next), sampling, generation, fidelity
reports and the ``ternfpga`` command line."""
