"""The output head's selection blocks: a block-RAM min-heap and the streaming top-K selector on it."""
from .heap import Heap
from .topk import TopK

__all__ = ["Heap", "TopK"]
