"""AXI4 bus signatures and masters."""
from .reader import AxiReader
from .signature import AxiReadSignature, BURST_INCR, RESP_OKAY

__all__ = ["AxiReader", "AxiReadSignature", "BURST_INCR", "RESP_OKAY"]
