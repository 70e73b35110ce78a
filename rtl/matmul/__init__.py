"""The MATMUL op unit: the ternary matmul engine run by a descriptor, its epilogue into the VMEM or the
head's top-K selector (op.py), the per-row epilogue (epilogue.py) and its multiplying lane (act.py)."""
from .act import ActLane, ActMode
from .epilogue import MatmulEpilogue, topk_layout
from .op import MatmulOp

__all__ = ["ActLane", "ActMode", "MatmulEpilogue", "MatmulOp", "topk_layout"]
