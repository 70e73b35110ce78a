"""The accelerator's vector op units (rtl/control/isa.py ops on VMEM vectors), each following the unit
contract of rtl/control/unit.py, and the stream blocks they share (table.py: DDR tables element by
element; run_writer.py: VMEM runs to DDR)."""
from .bias import BiasOp
from .kv_write import KvWriteOp
from .rope import RopeOp
from .store import StoreOp

__all__ = ["BiasOp", "KvWriteOp", "RopeOp", "StoreOp"]
