"""AXI4 bus signatures and masters."""
from .reader import AxiReader
from .signature import AxiLiteSignature, AxiReadSignature, AxiWriteSignature, BURST_INCR, RESP_OKAY

__all__ = ["AxiLiteSignature", "AxiReader", "AxiReadSignature", "AxiWriteSignature", "BURST_INCR", "RESP_OKAY"]
