"""What the KV260 bitstream, its device-tree overlay and the host's ``kv260`` transport must agree on.

One place for every name and number that crosses the board's edge: ``ternfpga build kv260`` writes them
into the overlay, the TCL and the deploy bundle; host/kv260.py looks for exactly these. Values marked
UNCONFIRMED in ../shared facts are single parameters here (docs/kv260.md says which).
"""
from __future__ import annotations

APP = "ternfpga"  # xmutil app name: /lib/firmware/xilinx/<APP>/<APP>.bit.bin, <APP>.dtbo, shell.json
FIRMWARE_DIR = f"/lib/firmware/xilinx/{APP}"
BITSTREAM = f"{APP}.bit.bin"
OVERLAY = f"{APP}.dtbo"
PARAMS_FILE = "accel.json"  # the bitstream's generation parameters, beside it in the firmware folder

# registers: M_AXI_HPM0_FPD's window (UG1085 / LiteX / FINN agree on 0xA000_0000), one 64 KiB page
REG_BASE = 0xA000_0000
REG_SIZE = 0x1_0000
UIO_NAME = APP  # generic-uio names the UIO device after its overlay node
HPM0_DATA_WIDTH = 32  # one register per beat; no width conversion in the PS

# the interrupt: pl_ps_irq0[0] is GIC SPI 89 (PG201), level-high
IRQ_SPI = 89
IRQ_LEVEL_HIGH = 4

# the PL clock: PL0_REF is clock 71 of zynqmp_clk; the overlay sets its rate at load time
PL0_CLOCK_ID = 71
DEFAULT_FREQ_MHZ = 250.0
IOPLL_MHZ = 1499.985  # inferred (KV260-FACTS §1): PL0 = IOPLL / (D0 * D1)

# the DDR buffer the accelerator reads and writes: a u-dma-buf device
UDMABUF_NAME = f"{APP}-ddr"  # /dev/<name>, /sys/class/u-dma-buf/<name>/
UDMABUF_CLASS = "u-dma-buf"

# AFI port widths for the overlay's afi node (index: 4..11 HP0..HP3 rd/wr, 14 HPM0/HPM1 widths)
AFI_HP_128 = [(i, 0) for i in range(4, 12)]  # 0 = 128 bit
AFI_HPM_WIDTH = {32: 0x000, 64: 0x100, 128: 0x200}  # HPM0_FPD in bits [9:8] of entry 14


def achieved_freq_mhz(freq_mhz: float) -> tuple[float, int, int]:
    """The PL0 frequency the PS can make nearest ``freq_mhz`` (IOPLL over two 6-bit dividers), and the
    dividers: what Vivado reports as PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ."""
    best = None
    for d0 in range(1, 64):
        for d1 in range(1, 64):
            f = IOPLL_MHZ / (d0 * d1)
            key = (abs(f - freq_mhz), d0 * d1, d0)
            if best is None or key < best[0]:
                best = (key, f, d0, d1)
    return best[1], best[2], best[3]
