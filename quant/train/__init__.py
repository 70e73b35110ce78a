"""Quantization-aware training and distillation of ternary decoders (``ternfpga train``).

fakequant: the quantizer's rules in differentiable torch (straight-through estimator);
model: a batched decoder whose parameter names are the Hugging Face tensor names;
data: token windows from text files; schedule: warm-up plus the two-stage BitNet schedule;
loop: the training run (budget, evaluation, resumable state, loss log); distill: the teacher's loss;
export: the Hugging Face checkpoint the quantizer reads.
"""
