// The virtual KV260's memory system (ddr_model.h): per HP port an AFI bridge, behind them one DDR
// controller with a DDR4 data bus, refresh and read/write turnarounds. docs/virtual-kv260.md, "The DDR
// model", gives every constant with its source and the calibration against the board.
//
// Structure, per PL cycle (tick):
//   AFI, per port: AR and AW queues (afi_cmd_depth AXI4 commands each), AXI4 bursts split into AXI3
//     sub-bursts of afi_subburst beats; at most afi_rd_issue sub-bursts in flight, and no more data held
//     than the read FIFO plus those sub-bursts (a FIFO the master does not drain stops the port); R
//     leaves in order, at most one beat per cycle, with one idle cycle every r_bubble_every beats. W beats
//     wait in the write data FIFO and reach the controller in pieces of one DRAM burst (wr_piece_bytes)
//     as their data arrives; a burst's B is issued once its last piece is in DRAM (no early BRESP).
//   Controller: one data bus, time kept in 1/65536 PL cycles. Reads and writes are served by round robin
//     among the XPIs (HP1 and HP2 share one) and inside an XPI among its ports, one sub-burst or piece per
//     grant. The bus stays in one direction: reads until a write piece has waited wr_starve cycles (or
//     wr_high are queued, or no read is waiting), then writes until none is left (or wr_run_max), each
//     switch paying the DDR4 turnaround. Refresh takes the bus for tRFC every tREFI.
//   Data moves when the DRAM moves it: a read sub-burst's bytes are copied when it is scheduled on the bus,
//     a write piece's bytes land when it is written.
#include "ddr_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace vkv260 {

namespace {

constexpr uint64_t FP = 1ull << 16;  // fixed-point time: 1 PL cycle
constexpr uint64_t NEVER = ~0ull;

uint64_t ns_to_fp(double ns, double pl_mhz) { return uint64_t(std::llround(ns * pl_mhz / 1000.0 * double(FP))); }

struct ArCmd {
    uint64_t addr;
    uint32_t id;
    int beats, size, issued;  // issued: beats sent to the controller so far
};

struct AwCmd {
    uint64_t addr;
    uint32_t id;
    int beats, size, assigned;  // assigned: W beats matched to it so far
    uint8_t resp;               // decided at acceptance: an erroring burst writes nothing
};

struct WBeat {
    uint8_t data[BEAT_BYTES];
    uint16_t strb;
    bool last;
};

struct Piece {  // consecutive W beats of one burst inside one DRAM burst
    uint64_t release;  // cycle it reached the controller
    uint64_t cost;     // data-bus time, fixed point
    int aw;            // AW queue slot
    int first, n;      // first beat index in the burst, beat count
    bool last;         // ends its burst
};

struct BEntry {
    uint64_t ready;
    uint32_t id;
    uint8_t resp;
};

template <typename T>
struct Ring {  // fixed capacity, allocated once
    std::vector<T> v;
    int head = 0, count = 0;
    void init(int cap) { v.assign(size_t(cap), T{}); head = count = 0; }
    int cap() const { return int(v.size()); }
    bool full() const { return count == cap(); }
    T& at(int i) { int k = head + i; return v[size_t(k >= cap() ? k - cap() : k)]; }
    const T& at(int i) const { int k = head + i; return v[size_t(k >= cap() ? k - cap() : k)]; }
    T& front() { return v[size_t(head)]; }
    T& push() { T& t = at(count); count++; return t; }
    void pop(int n = 1) { head += n; if (head >= cap()) head -= cap(); count -= n; }
    int slot(int i) const { int k = head + i; return k >= cap() ? k - cap() : k; }
};

// beat i of an INCR burst: the first beat at addr, the rest at size-aligned steps
inline uint64_t beat_addr(uint64_t addr, int size, int i) {
    return i == 0 ? addr : ((addr >> size) << size) + (uint64_t(i) << size);
}
// end (exclusive) of the bytes beat i carries
inline uint64_t beat_end(uint64_t addr, int size, int i) { return ((beat_addr(addr, size, i) >> size) + 1) << size; }

struct Range {
    uint64_t lo, hi;
};

}  // namespace

struct DdrModel::Impl {
    DdrConfig cfg;
    uint8_t* mem;
    uint64_t bytes, base;

    // derived timing, fixed point
    uint64_t beat_fp, bl8_fp, to_write_fp, to_read_fp, rfc_fp, refi_cycles_fp;
    int latency;
    int piece_shift;

    struct Port {
        Ring<ArCmd> arq;
        Ring<RBeat> rf;    // read data: the FIFO and the sub-bursts in flight, slots taken when scheduled
        Ring<uint64_t> sb_arrival;  // arrival cycle of each sub-burst in flight (non-decreasing)
        std::vector<uint64_t> rf_arrival;
        std::vector<uint8_t> rf_bytes;
        uint64_t last_arrival = 0;
        int since_bubble = 0;

        Ring<AwCmd> awq;
        int aw_assign = 0;  // index in awq of the command the next W beat belongs to
        Ring<WBeat> wf;
        int w_assign = 0;   // W beats in wf already matched to a command
        int piece_first = -1, piece_n = 0;
        Ring<Piece> pieces;
        Ring<BEntry> bq;

        bool ar_rdy = false, r_vld = false, aw_rdy = false, w_rdy = false, b_vld = false;
        PortStats st{};
        bool touched = false;
        uint64_t viol = 0;
    };
    Port ports[MAX_PORTS];

    // controller
    int nxpi = 0;
    int xpi_ports[MAX_PORTS][MAX_PORTS];
    int xpi_nports[MAX_PORTS];
    int rr_read = 0, rr_write = 0;
    int rr_in_read[MAX_PORTS] = {}, rr_in_write[MAX_PORTS] = {};
    bool write_mode = false;
    int write_run = 0;
    int pieces_queued = 0;
    uint64_t bus = 0;  // data bus free from this time (fixed point)
    uint64_t next_refresh;
    uint64_t now = 0;
    bool frozen = false;
    uint64_t rng;
    ControllerStats cs{};

    std::vector<Range> rd_err, wr_err;

    Impl(const DdrConfig& c, uint8_t* m, uint64_t n, uint64_t b) : cfg(c), mem(m), bytes(n), base(b) {
        const double mhz = cfg.pl_mhz;
        const double tck_ns = 2000.0 / cfg.ddr_mts;
        // one 16-byte beat on a bus moving ddr_bus_bytes per transfer
        beat_fp = uint64_t(std::llround(double(FP) * BEAT_BYTES * mhz / (cfg.ddr_mts * cfg.ddr_bus_bytes)));
        // the DRAM moves whole BL8 bursts (8 x ddr_bus_bytes = 64 B): a shorter access still takes one
        bl8_fp = beat_fp * uint64_t(8 * cfg.ddr_bus_bytes) / BEAT_BYTES;
        // read->write: idle data bus, then the written row opened (precharge + activate), plus the fitted rest
        to_write_fp = ns_to_fp(cfg.rtw_idle_nck * tck_ns + cfg.t_rp_ns + cfg.t_rcd_ns, mhz) +
                      uint64_t(std::llround(cfg.switch_extra * double(FP)));
        // write->read: tWTR_L after the last write data, then CL until read data
        to_read_fp = ns_to_fp(cfg.t_wtr_l_ns + cfg.cl * tck_ns, mhz);
        rfc_fp = ns_to_fp(cfg.t_rfc_ns, mhz);
        refi_cycles_fp = ns_to_fp(cfg.t_refi_ns, mhz);
        next_refresh = refi_cycles_fp / FP;
        latency = std::max(2, cfg.read_latency > 0 ? cfg.read_latency : cfg.default_read_latency);
        piece_shift = 0;
        while ((1 << (piece_shift + 1)) <= std::max(BEAT_BYTES, cfg.wr_piece_bytes)) piece_shift++;
        rng = cfg.seed * 0x9E3779B97F4A7C15ull + 1;

        const int depth = std::max(1, cfg.afi_cmd_depth);
        const int issue = std::max(1, cfg.afi_rd_issue);
        const int rfifo = std::max(0, cfg.afi_rfifo_beats) + issue * std::max(1, cfg.afi_subburst);
        const int wfifo = std::max(1, cfg.afi_wfifo_beats);
        for (auto& p : ports) {
            p.arq.init(depth);
            p.rf.init(rfifo);
            p.sb_arrival.init(issue);
            p.rf_arrival.assign(size_t(rfifo), 0);
            p.rf_bytes.assign(size_t(rfifo), 0);
            p.awq.init(depth);
            p.wf.init(wfifo);
            p.pieces.init(wfifo);
            p.bq.init(depth);
        }
        for (int x = 0; x < MAX_PORTS; x++) xpi_nports[x] = 0;
        int map[MAX_PORTS];
        for (int p = 0; p < MAX_PORTS; p++) map[p] = -1;
        for (int p = 0; p < MAX_PORTS; p++) {  // XPIs numbered in order of first use
            int x = -1;
            for (int q = 0; q < p; q++)
                if (cfg.xpi_of_port[q] == cfg.xpi_of_port[p]) x = map[q];
            if (x < 0) x = nxpi++;
            map[p] = x;
            xpi_ports[x][xpi_nports[x]++] = p;
        }
        update_flags();
    }

    // -- address checks ------------------------------------------------------------------------------
    bool inside(uint64_t lo, uint64_t hi) const { return lo >= base && hi <= base + bytes && lo <= hi; }
    static bool hits(const std::vector<Range>& rs, uint64_t lo, uint64_t hi) {
        for (const Range& r : rs)
            if (lo < r.hi && r.lo < hi) return true;
        return false;
    }
    void check_burst(Port& P, uint64_t addr, int beats, int size) {
        if (beats < 1 || beats > 256 || size < 0 || size > 4) P.viol++;
        uint64_t last = beat_end(addr, size, std::max(1, beats) - 1) - 1;
        if ((addr >> 12) != (last >> 12)) P.viol++;  // AXI: a burst must not cross 4 KiB
    }

    // -- AFI -----------------------------------------------------------------------------------------
    void accept_ar(int p, uint64_t addr, int beats, uint32_t id, int size) {
        Port& P = ports[p];
        check_burst(P, addr, beats, size);
        beats = std::min(256, std::max(1, beats));
        size = std::min(4, std::max(0, size));
        if (P.arq.full()) { P.viol++; return; }
        ArCmd& c = P.arq.push();
        c = ArCmd{addr, id, beats, size, 0};
        P.st.read_bursts++;
        P.ar_rdy = false;  // one handshake per cycle
    }

    void accept_aw(int p, uint64_t addr, int beats, uint32_t id, int size) {
        Port& P = ports[p];
        check_burst(P, addr, beats, size);
        beats = std::min(256, std::max(1, beats));
        size = std::min(4, std::max(0, size));
        if (P.awq.count + P.bq.count >= P.awq.cap()) { P.viol++; return; }
        uint64_t hi = beat_end(addr, size, beats - 1);
        uint8_t resp = OKAY;
        if (!inside(addr, hi)) resp = DECERR;
        else if (hits(wr_err, addr, hi)) resp = SLVERR;
        AwCmd& c = P.awq.push();
        c = AwCmd{addr, id, beats, size, 0, resp};
        P.st.write_bursts++;
        P.aw_rdy = false;
    }

    // match W beats to their bursts and cut them into pieces at DRAM-burst boundaries
    void assemble_pieces(Port& P) {
        while (P.w_assign < P.wf.count && P.aw_assign < P.awq.count) {
            AwCmd& a = P.awq.at(P.aw_assign);
            const WBeat& wb = P.wf.at(P.w_assign);
            int i = a.assigned++;
            P.w_assign++;
            bool end = a.assigned == a.beats;
            if (wb.last != end) P.viol++;
            if (P.piece_first < 0) P.piece_first = i;
            P.piece_n++;
            uint64_t blk = beat_addr(a.addr, a.size, i) >> piece_shift;
            if (end || (beat_addr(a.addr, a.size, i + 1) >> piece_shift) != blk) {
                Piece& pc = P.pieces.push();
                pc.release = now;
                pc.aw = P.awq.slot(P.aw_assign);
                pc.first = P.piece_first;
                pc.n = P.piece_n;
                pc.last = end;
                // full-width beats of one DRAM burst go out as one (masked) BL8; narrow beats are not
                // packed (UG1085: only modifiable transactions are upsized), so each is a BL8 of its own
                pc.cost = a.resp != OKAY ? 0 : a.size < 4 ? uint64_t(P.piece_n) * bl8_fp : bl8_fp;
                pieces_queued++;
                P.piece_first = -1;
                P.piece_n = 0;
                if (end) P.aw_assign++;
            }
        }
    }

    bool can_issue_read(const Port& P) const {
        if (!P.arq.count) return false;
        const ArCmd& c = P.arq.at(0);
        int n = std::min(cfg.afi_subburst, c.beats - c.issued);
        return !P.sb_arrival.full() && P.rf.cap() - P.rf.count >= n;
    }

    // -- controller ----------------------------------------------------------------------------------
    int pick(int& rr, int* rr_in, bool reads) {
        for (int k = 1; k <= nxpi; k++) {
            int x = (rr + k) % nxpi;
            int np = xpi_nports[x];
            for (int j = 1; j <= np; j++) {
                int slot = (rr_in[x] + j) % np;
                int p = xpi_ports[x][slot];
                bool ok = reads ? can_issue_read(ports[p]) : ports[p].pieces.count > 0;
                if (ok) {
                    rr = x;
                    rr_in[x] = slot;
                    return p;
                }
            }
        }
        return -1;
    }

    void serve_read(int p, uint64_t start) {
        Port& P = ports[p];
        ArCmd& c = P.arq.front();
        int n = std::min(cfg.afi_subburst, c.beats - c.issued);
        uint64_t first = beat_addr(c.addr, c.size, c.issued), end = beat_end(c.addr, c.size, c.issued + n - 1);
        uint64_t dur = (((end - 1) >> 6) - (first >> 6) + 1) * bl8_fp;  // whole BL8 bursts
        bus = start + dur;
        cs.read_subbursts++;
        cs.data_busy_fp += dur;
        uint64_t arrival = start / FP + uint64_t(latency) - 1;
        if (cfg.read_jitter > 0) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            arrival += rng % uint64_t(cfg.read_jitter + 1);
        }
        arrival = std::max(arrival, P.last_arrival);  // in order per port
        P.last_arrival = arrival;
        P.sb_arrival.push() = arrival;
        const uint64_t step = 1ull << c.size;
        for (int k = 0; k < n; k++) {
            int i = c.issued + k;
            int slot = P.rf.slot(P.rf.count);
            RBeat& b = P.rf.push();
            uint64_t a = beat_addr(c.addr, c.size, i);
            uint64_t lo = (a >> c.size) << c.size;
            uint64_t word = a & ~uint64_t(BEAT_BYTES - 1);
            b.id = c.id;
            b.last = i == c.beats - 1;
            if (!inside(lo, lo + step)) {
                b.resp = DECERR;
                std::memset(b.data, 0, BEAT_BYTES);
            } else if (!rd_err.empty() && hits(rd_err, lo, lo + step)) {
                b.resp = SLVERR;
                std::memset(b.data, 0, BEAT_BYTES);
            } else {
                b.resp = OKAY;
                if (word >= base && word + BEAT_BYTES <= base + bytes) {
                    std::memcpy(b.data, mem + (word - base), BEAT_BYTES);
                } else {  // a narrow beat at the array's edge: bytes beyond it read as zero
                    for (int j = 0; j < BEAT_BYTES; j++) {
                        uint64_t x = word + uint64_t(j);
                        b.data[j] = (x >= base && x < base + bytes) ? mem[x - base] : 0;
                    }
                }
            }
            P.rf_arrival[size_t(slot)] = arrival;
            P.rf_bytes[size_t(slot)] = uint8_t(step);
        }
        c.issued += n;
        if (c.issued == c.beats) {  // the command has left the AFI's queue
            P.arq.pop();
        }
    }

    void serve_write(int p, uint64_t start) {
        Port& P = ports[p];
        Piece pc = P.pieces.front();
        P.pieces.pop();
        pieces_queued--;
        AwCmd& a = P.awq.v[size_t(pc.aw)];
        bus = start + pc.cost;
        cs.write_pieces++;
        cs.data_busy_fp += pc.cost;
        for (int k = 0; k < pc.n; k++) {
            const WBeat& wb = P.wf.at(k);
            if (a.resp == OKAY) {
                uint64_t addr = beat_addr(a.addr, a.size, pc.first + k);
                uint64_t word = addr & ~uint64_t(BEAT_BYTES - 1);
                // AXI: only the lanes of the beat's own bytes may be written
                int lo = int(addr - word), hi = int(beat_end(a.addr, a.size, pc.first + k) - word);
                if (wb.strb == 0xFFFF && lo == 0 && hi == BEAT_BYTES) {
                    std::memcpy(mem + (word - base), wb.data, BEAT_BYTES);
                } else {
                    for (int j = lo; j < hi; j++)
                        if ((wb.strb >> j) & 1) mem[word + uint64_t(j) - base] = wb.data[j];
                }
            }
        }
        P.wf.pop(pc.n);
        P.w_assign -= pc.n;
        if (pc.last) {
            BEntry& e = P.bq.push();  // bq has a slot per AW slot: never full here
            e.ready = (start + pc.cost + FP - 1) / FP + uint64_t(cfg.b_latency);
            e.id = a.id;
            e.resp = a.resp;
            P.awq.pop();  // pieces are written in order: this is the queue's oldest burst
            P.aw_assign--;
        }
    }

    void schedule() {
        const uint64_t t0 = now * FP, limit = t0 + FP;
        if (now >= next_refresh) {  // the bus is the DRAM's for tRFC (all-bank refresh)
            bus = std::max(bus, t0) + rfc_fp;
            cs.refreshes++;
            next_refresh = (next_refresh * FP + refi_cycles_fp) / FP;
            if (next_refresh <= now) next_refresh = now + refi_cycles_fp / FP;  // after a freeze: start afresh
        }
        while (bus < limit) {
            bool rp = false;
            for (int p = 0; p < MAX_PORTS && !rp; p++) rp = can_issue_read(ports[p]);
            bool wp = pieces_queued > 0;
            if (!write_mode) {
                if (wp) {
                    uint64_t oldest = NEVER;
                    for (auto& P : ports)
                        if (P.pieces.count) oldest = std::min(oldest, P.pieces.front().release);
                    if (!rp || now - oldest >= uint64_t(cfg.wr_starve) || pieces_queued >= cfg.wr_high) {
                        bus = std::max(bus, t0) + to_write_fp;
                        write_mode = true;
                        write_run = 0;
                        cs.write_episodes++;
                        continue;
                    }
                }
                if (!rp) break;
                int p = pick(rr_read, rr_in_read, true);
                serve_read(p, std::max(bus, t0));
            } else {
                if (rp && (!wp || write_run >= cfg.wr_run_max)) {
                    bus = std::max(bus, t0) + to_read_fp;
                    write_mode = false;
                    continue;
                }
                if (!wp) break;
                int p = pick(rr_write, rr_in_write, false);
                serve_write(p, std::max(bus, t0));
                write_run++;
            }
        }
    }

    void update_flags() {
        for (auto& P : ports) {
            if (frozen) {
                P.ar_rdy = P.r_vld = P.aw_rdy = P.w_rdy = P.b_vld = false;
                continue;
            }
            P.ar_rdy = !P.arq.full();
            bool v = P.rf.count > 0 && P.rf_arrival[size_t(P.rf.head)] <= now;
            if (v && P.since_bubble >= cfg.r_bubble_every && cfg.r_bubble_every > 0) {
                v = false;  // the AFI's idle R cycle
                P.since_bubble = 0;
            }
            P.r_vld = v;
            P.aw_rdy = P.awq.count + P.bq.count < P.awq.cap();  // a write is outstanding until its B is taken
            P.w_rdy = !P.wf.full();
            P.b_vld = P.bq.count > 0 && P.bq.front().ready <= now;
        }
    }

    void tick() {
        now++;
        if (frozen) return;
        for (auto& P : ports)
            if (P.w_assign < P.wf.count && P.aw_assign < P.awq.count) assemble_pieces(P);
        if (bus < (now + 1) * FP || now >= next_refresh) schedule();  // else the bus is taken this cycle
        for (auto& P : ports)  // a sub-burst stops counting against the issuing capability once its data is in
            while (P.sb_arrival.count && P.sb_arrival.front() <= now) P.sb_arrival.pop();
        update_flags();
    }

    void touch(Port& P) {
        if (!P.touched) P.st.first_cycle = now;
        P.touched = true;
        P.st.last_cycle = now;
    }
};

DdrModel::DdrModel(const DdrConfig& cfg, uint8_t* mem, uint64_t bytes, uint64_t phys_base)
    : impl_(new Impl(cfg, mem, bytes, phys_base)) {}
DdrModel::~DdrModel() = default;

bool DdrModel::ar_ready(int port) const { return impl_->ports[port].ar_rdy; }
void DdrModel::ar(int port, uint64_t addr, int beats, uint32_t id) { ar(port, addr, beats, id, 4); }
void DdrModel::ar(int port, uint64_t addr, int beats, uint32_t id, int size_log2) {
    impl_->accept_ar(port, addr, beats, id, size_log2);
    impl_->touch(impl_->ports[port]);
}
bool DdrModel::r_valid(int port) const { return impl_->ports[port].r_vld; }
const RBeat& DdrModel::r_front(int port) const {
    const auto& P = impl_->ports[port];
    return P.rf.v[size_t(P.rf.head)];
}
void DdrModel::r_pop(int port) {
    auto& P = impl_->ports[port];
    if (!P.r_vld) {
        P.viol++;
        return;
    }
    const RBeat& b = P.rf.front();
    P.st.read_beats++;
    P.st.read_bytes += P.rf_bytes[size_t(P.rf.head)];
    if (b.resp != OKAY) P.st.errors++;
    P.rf.pop();
    P.since_bubble++;
    P.r_vld = false;
    impl_->touch(P);
}

bool DdrModel::aw_ready(int port) const { return impl_->ports[port].aw_rdy; }
void DdrModel::aw(int port, uint64_t addr, int beats, uint32_t id) { aw(port, addr, beats, id, 4); }
void DdrModel::aw(int port, uint64_t addr, int beats, uint32_t id, int size_log2) {
    impl_->accept_aw(port, addr, beats, id, size_log2);
    impl_->touch(impl_->ports[port]);
}
bool DdrModel::w_ready(int port) const { return impl_->ports[port].w_rdy; }
void DdrModel::w(int port, const uint8_t* data, uint16_t strb, bool last) {
    auto& P = impl_->ports[port];
    if (!P.w_rdy || P.wf.full()) {
        P.viol++;
        return;
    }
    WBeat& b = P.wf.push();
    std::memcpy(b.data, data, BEAT_BYTES);
    b.strb = strb;
    b.last = last;
    P.st.write_beats++;
    P.st.write_bytes += uint64_t(__builtin_popcount(strb));
    P.w_rdy = false;
    impl_->touch(P);
}
bool DdrModel::b_valid(int port) const { return impl_->ports[port].b_vld; }
BResp DdrModel::b_front(int port) const {
    auto& P = impl_->ports[port];
    const BEntry& e = P.bq.v[size_t(P.bq.head)];
    return BResp{e.resp, e.id};
}
void DdrModel::b_pop(int port) {
    auto& P = impl_->ports[port];
    if (!P.b_vld) {
        P.viol++;
        return;
    }
    if (P.bq.front().resp != OKAY) P.st.errors++;
    P.bq.pop();
    P.b_vld = false;
    impl_->touch(P);
}

void DdrModel::tick() { impl_->tick(); }
uint64_t DdrModel::cycle() const { return impl_->now; }

void DdrModel::add_read_error(uint64_t lo, uint64_t hi) { impl_->rd_err.push_back({lo, hi}); }
void DdrModel::add_write_error(uint64_t lo, uint64_t hi) { impl_->wr_err.push_back({lo, hi}); }
void DdrModel::clear_errors() {
    impl_->rd_err.clear();
    impl_->wr_err.clear();
}
void DdrModel::set_frozen(bool frozen) {
    impl_->frozen = frozen;
    impl_->update_flags();
}

PortStats DdrModel::stats(int port) const { return impl_->ports[port].st; }
ControllerStats DdrModel::controller_stats() const { return impl_->cs; }
uint64_t DdrModel::violations(int port) const { return impl_->ports[port].viol; }
void DdrModel::clear_stats() {
    for (auto& P : impl_->ports) {
        P.st = PortStats{};
        P.touched = false;
    }
    impl_->cs = ControllerStats{};
}
bool DdrModel::idle() const {
    for (const auto& P : impl_->ports)
        if (P.arq.count || P.rf.count || P.awq.count || P.wf.count || P.bq.count) return false;
    return true;
}
const DdrConfig& DdrModel::config() const { return impl_->cfg; }

}  // namespace vkv260
