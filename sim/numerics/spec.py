"""Constants of the numerics contract (docs/numerics.md). Bump NUMERICS_VERSION on any change that
alters a single output bit; images record it and the golden model refuses a mismatch."""
from __future__ import annotations

from . import pf

NUMERICS_VERSION = 1

FX_FRAC = 16  # residual stream and wide intermediates: int32, 16 fraction bits (Q15.16)
FX_MIN = -(1 << 31)
FX_MAX = (1 << 31) - 1
ACT_MAX = 127  # int8 activations, symmetric [-127, 127]
QUANT_MAG_BITS = 16  # the absmax quantizer first reduces |z| to 16 bits
QUANT_RECIP_FRAC = 24  # ... then multiplies by round(127 * 2**24 / M')
NORM_MAG_BITS = 23  # RMSNorm squares inputs reduced to |h| <= 2**23
LOGIT_FRAC = 10  # attention logits in the log2 domain, 10 fraction bits
ROPE_FRAC = 14
SIG_STEP_SHIFT = 11  # sigmoid grid step 1/32 in Q.16 -> 2**11

# maxima the widths below are proven for (docs/numerics.md "Why nothing overflows")
MAX_IN_FEATURES = 32768  # K of any linear: |acc| <= 127 * 32768 < 2**23
MAX_HEAD_DIM = 256
MAX_CTX = 65536

INV127 = pf.from_float(1.0 / 127.0)  # m = 33026, e = -22
FX_ONE_LSB = pf.PF(pf._i64(1 << 15), pf._i64(-15 - FX_FRAC))  # 2**-16 as a pf
LOG2E = 1.4426950408889634


def numerics_header() -> dict:
    return {"version": NUMERICS_VERSION, "fx_frac": FX_FRAC}
