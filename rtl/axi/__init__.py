"""AXI4 bus signatures, masters and arbiters."""
from .arbiter import AxiReadArbiter, AxiWriteArbiter
from .reader import AxiReader
from .signature import AxiLiteSignature, AxiReadSignature, AxiSignature, AxiWriteSignature, BURST_INCR, RESP_OKAY
from .writer import AxiWriter

__all__ = ["AxiLiteSignature", "AxiReadArbiter", "AxiReader", "AxiReadSignature", "AxiSignature",
           "AxiWriteArbiter", "AxiWriter", "AxiWriteSignature", "BURST_INCR", "RESP_OKAY"]
