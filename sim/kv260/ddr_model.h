// The virtual KV260's memory system: the PS side of the four S_AXI_HPx_FPD ports (the AFI bridges)
// and the DDR controller with its DRAM, cycle by cycle at the PL clock, over one real byte array.
//
// Used by the board harness (board.cpp: the accelerator's four AXI4 masters) and by the calibration
// traffic generator (traffic.cpp: DMA-like masters that reproduce the published KV260 measurements).
// Every constant of the timing model is a named field of DdrConfig with its source or, where nothing
// was published, says that it is chosen; docs/virtual-kv260.md lists them all.
//
// Cycle protocol (one call sequence per PL clock cycle, for every port):
//   1. the master looks at the *_ready() / *_valid() state, which is fixed for the whole cycle (it
//      depends only on the model's registered state, never on this cycle's master signals);
//   2. for every handshake that fires this cycle (valid && ready) the master calls the matching
//      ar() / aw() / w() / r_pop() / b_pop();
//   3. tick() advances the model to the next cycle.
// Addresses are physical: the byte array holds [phys_base, phys_base + bytes). Reads return the array's
// bytes; writes land in the array (byte strobes honoured). An access outside the array, or inside an
// injected error range, is answered with DECERR / SLVERR and moves no data.
#pragma once

#include <cstdint>
#include <memory>

namespace vkv260 {

constexpr int BEAT_BYTES = 16;  // S_AXI_HPx_FPD at 128 bits
constexpr int MAX_PORTS = 4;

enum Resp : uint8_t { OKAY = 0, EXOKAY = 1, SLVERR = 2, DECERR = 3 };

struct DdrConfig {
    double pl_mhz = 250.0;  // pl_clk0: the figures below are in cycles of this clock
    // -- DRAM (DDR4, one rank, 64-bit data bus) --
    double ddr_mts = 2133.33;     // data rate: BN's dpll_int 2133333312 Hz (KV260-FACTS §5); the preset says 2400
    int ddr_bus_bytes = 8;        // 64-bit DDR4 (DESIGN.md "Facts to build on")
    double t_refi_ns = 7800.0;    // JEDEC DDR4 average refresh interval (normal temperature)
    double t_rfc_ns = 350.0;      // JEDEC DDR4 tRFC1 of an 8 Gb device (4 GB on 64 bits: four x16 8 Gb parts)
    int cl = 15;                  // JEDEC DDR4-2133P CAS latency (nCK)
    int rtw_idle_nck = 2;         // JEDEC read-to-write spacing RL+BL/2-WL+2 leaves 2 nCK of idle data bus
    double t_wtr_l_ns = 7.5;      // JEDEC DDR4 tWTR_L: write data end to read command, same bank group
    double t_rp_ns = 14.06;       // JEDEC DDR4-2133P precharge
    double t_rcd_ns = 14.06;      // JEDEC DDR4-2133P activate to column command
    double switch_extra = 55.0;   // fitted (PL cycles): loss per write episode beyond the JEDEC gaps (docs)
    // -- controller (DDRC) read/write policy --
    int wr_starve = 192;          // chosen (PL cycles): a queued write waits at most this long while reads flow
    int wr_high = 16;             // chosen: this many queued write pieces switch the bus to writes at once
    int wr_run_max = 32;          // chosen: write pieces served per write episode before reads get the bus back
    // -- AFI (one per HP port) --
    int afi_cmd_depth = 8;        // UG1085: read and write command queues 8 deep, acceptance capability 8
    int afi_rd_issue = 16;        // UG1085: issuing capability up to 16 (AXI3 read sub-bursts in flight)
    int afi_rfifo_beats = 128;    // UG1085: read data FIFO 128 x 128 b (a full FIFO holds data back in the PS)
    int afi_wfifo_beats = 128;    // UG1085: write data FIFO 128 x 128 b
    int afi_subburst = 16;        // UG1085: the AFI converts AXI4 to AXI3, at most 16 beats inside the PS
    int r_bubble_every = 100;     // fitted: one idle R cycle per 100 beats = 0.990 beat/clk (BN: E=1 3.960 GB/s)
    int wr_piece_bytes = 64;      // chosen: a write reaches the controller one DRAM burst (BL8 x 8 B) at a time
    int b_latency = 8;            // chosen (PL cycles): last write piece in DRAM to BVALID (no early BRESP)
    int xpi_of_port[MAX_PORTS] = {0, 1, 1, 2};  // UG1085: HP1 and HP2 share XPI 4; HP0, HP3 have their own
    int default_read_latency = 64;  // chosen (PL cycles, none published): AR on an idle system to first R beat
    int read_jitter = 0;          // chosen 0 (PL cycles): uniform extra latency per sub-burst, for robustness runs
    uint64_t seed = 1;  // for any random part of the model (latency distribution)
    int read_latency = 0;  // 0: the model's default; else PL cycles (for latency sweeps)
};

struct RBeat {
    uint8_t data[BEAT_BYTES];
    uint8_t resp;
    bool last;
    uint32_t id;
};

struct BResp {
    uint8_t resp;
    uint32_t id;
};

struct ControllerStats {
    uint64_t read_subbursts;   // AXI3 read sub-bursts served by the DRAM
    uint64_t write_pieces;     // write pieces (<= wr_piece_bytes) written to the DRAM
    uint64_t write_episodes;   // read-to-write bus turnarounds
    uint64_t refreshes;
    uint64_t data_busy_fp;     // data-bus time moving data, in 1/65536 PL cycles
};

struct PortStats {
    uint64_t read_beats, write_beats;      // data beats moved on R / W
    uint64_t read_bursts, write_bursts;    // AR / AW handshakes
    uint64_t read_bytes, write_bytes;      // bytes moved (write: strobed bytes)
    uint64_t first_cycle, last_cycle;      // first and last cycle with any handshake on the port
    uint64_t errors;                       // responses other than OKAY
};

class DdrModel {
  public:
    DdrModel(const DdrConfig& cfg, uint8_t* mem, uint64_t bytes, uint64_t phys_base);
    ~DdrModel();
    DdrModel(const DdrModel&) = delete;
    DdrModel& operator=(const DdrModel&) = delete;

    // read address / data (AXI4: len = beats - 1 up to 255, size 4 = 16 bytes, INCR bursts)
    bool ar_ready(int port) const;
    void ar(int port, uint64_t addr, int beats, uint32_t id);
    bool r_valid(int port) const;
    const RBeat& r_front(int port) const;
    void r_pop(int port);
    // write address / data / response
    bool aw_ready(int port) const;
    void aw(int port, uint64_t addr, int beats, uint32_t id);
    bool w_ready(int port) const;
    void w(int port, const uint8_t* data, uint16_t strb, bool last);
    bool b_valid(int port) const;
    BResp b_front(int port) const;
    void b_pop(int port);

    // narrow bursts: size_log2 = log2(bytes per beat), 0..4 (the plain calls use 4); a narrow write beat
    // carries its bytes on the lanes of its address, as AXI puts them
    void ar(int port, uint64_t addr, int beats, uint32_t id, int size_log2);
    void aw(int port, uint64_t addr, int beats, uint32_t id, int size_log2);

    void tick();
    uint64_t cycle() const;

    // faults: responses in [lo, hi) become SLVERR; a frozen model stops answering (no ready, no data)
    void add_read_error(uint64_t lo, uint64_t hi);
    void add_write_error(uint64_t lo, uint64_t hi);
    void clear_errors();
    void set_frozen(bool frozen);

    PortStats stats(int port) const;
    ControllerStats controller_stats() const;
    uint64_t violations(int port) const;  // AXI rule breaks seen: 4 KiB crossing, bad length, WLAST mismatch
    void clear_stats();
    bool idle() const;  // nothing queued or in flight on any port
    const DdrConfig& config() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vkv260
