// Verilator harness for the ternary matmul engine (rtl/engine.py) with a C++ AXI4 memory model.
//
// Built by sim/verilator/engine_bench.py:
//   verilator --cc --exe --build --prefix Vengine -CFLAGS -DNPORTS=<ports> harness_engine.cpp engine.v
//
// Usage: engine_sim IN.bin OUT.json [--latency L] [--ar-stall P] [--out-stall P] [--seed S]
//                   [--slverr ADDR]... [--max-cycles N]
//
// Memory model, per port: an AXI4 read slave over the one shared byte buffer of IN.bin. AR is accepted
// every cycle (or stalled with probability --ar-stall). A burst accepted at clock edge t presents its
// first beat in cycle t + L and then one beat per cycle, bursts in order, so any number of bursts may
// be in flight and only the R channel (one beat per cycle per port) limits the rate. Beats carry
// rlast and RRESP OKAY, or SLVERR when the beat's address is one of the --slverr addresses (DECERR and
// zero data outside the buffer, counted as a protocol violation). out.ready is 1, or random
// back-pressure with probability --out-stall.
//
// IN.bin (all little-endian u64 unless noted):
//   magic "TFVLENG1", ports, batch, beat_bytes, base, port_stride, n_rows, k_chunks, n_groups,
//   w_scale (packed PF word: m | e << 16), x_scale[batch] (packed PF words),
//   act_b_off, act_b_w, act_chunk_off, act_chunk_w, act_data_off, act_data_w,
//   out_row_off, out_row_w, out_value_off,
//   n_act, then n_act times: b, chunk, ceil(act_data_w / 8) data bytes,
//   mem_len, then mem_len bytes (the packed tensor; byte 0 sits at address `base`).
//
// OUT.json: {"done":..,"error":..,"cycles":..,"wall_s":..,"cpu_s":.. (the pass's simulation loop),
//            "ports":[{per-port counters}],
//            "rows":[[row, v0, .., v(B-1)], ...] (in the order they left the engine),
//            "row_cycles":[cycle each row left, ...]}. Cycle c = the c-th clock edge after the start edge.
#include <verilated.h>

#include <chrono>
#include <ctime>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "Vengine.h"

// Verilator escapes the "__" of Amaranth's port names (axi0__araddr) as "___05F".

#ifndef NPORTS
#error "define NPORTS (the engine's port count)"
#endif

// ---- bit helpers for Verilator's port types (CData/SData/IData/QData or VlWide<N>) ----------------
template <typename T>
static typename std::enable_if<std::is_integral<T>::value>::type set_bit(T& s, int i, bool v) {
    if (i >= int(8 * sizeof(T))) return;
    if (v) s = T(s | (T(1) << i));
    else s = T(s & ~(T(1) << i));
}
template <std::size_t N>
static void set_bit(VlWide<N>& s, int i, bool v) {
    if (i >= int(32 * N)) return;
    if (v) s[i / 32] |= (1u << (i % 32));
    else s[i / 32] &= ~(1u << (i % 32));
}
template <typename T>
static typename std::enable_if<std::is_integral<T>::value, bool>::type get_bit(const T& s, int i) {
    return i < int(8 * sizeof(T)) && ((uint64_t(s) >> i) & 1);
}
template <std::size_t N>
static bool get_bit(const VlWide<N>& s, int i) {
    return i < int(32 * N) && ((s[i / 32] >> (i % 32)) & 1);
}
template <typename T>
static void set_field(T& s, int off, int width, uint64_t v) {
    for (int i = 0; i < width; i++) set_bit(s, off + i, i < 64 && ((v >> i) & 1));
}
template <typename T>
static void set_field_bytes(T& s, int off, int width, const uint8_t* bytes) {
    for (int i = 0; i < width; i++) set_bit(s, off + i, (bytes[i / 8] >> (i % 8)) & 1);
}
template <typename T>
static uint64_t get_field(const T& s, int off, int width) {
    uint64_t v = 0;
    for (int i = 0; i < width && i < 64; i++) v |= uint64_t(get_bit(s, off + i)) << i;
    return v;
}
template <typename T>
static void clear_all(T& s) {
    s = 0;
}
template <std::size_t N>
static void clear_all(VlWide<N>& s) {
    for (std::size_t i = 0; i < N; i++) s[i] = 0;
}
// beat data: little-endian bytes into the port
template <typename T>
static typename std::enable_if<std::is_integral<T>::value>::type set_bytes(T& s, const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t k = 0; k < n && k < 8; k++) v |= uint64_t(p[k]) << (8 * k);
    s = T(v);
}
template <std::size_t N>
static void set_bytes(VlWide<N>& s, const uint8_t* p, size_t n) {
    if (n == 4 * N) {
        std::memcpy(s.data(), p, n);  // little-endian host
        return;
    }
    for (std::size_t i = 0; i < N; i++) {
        uint32_t w = 0;
        for (int b = 0; b < 4; b++)
            if (i * 4 + b < n) w |= uint32_t(p[i * 4 + b]) << (8 * b);
        s[i] = w;
    }
}

// ---- input file -----------------------------------------------------------------------------------
struct Input {
    uint64_t ports, batch, beat_bytes, base, port_stride, n_rows, k_chunks, n_groups, w_scale;
    std::vector<uint64_t> x_scale;
    uint64_t act_b_off, act_b_w, act_chunk_off, act_chunk_w, act_data_off, act_data_w;
    uint64_t out_row_off, out_row_w, out_value_off;
    struct Act {
        uint64_t b, chunk;
        std::vector<uint8_t> data;
    };
    std::vector<Act> acts;
    std::vector<uint8_t> mem;
};

[[noreturn]] static void die(const std::string& msg) {
    std::fprintf(stderr, "engine_sim: %s\n", msg.c_str());
    std::exit(2);
}

static Input read_input(const char* path) {
    FILE* f = std::fopen(path, "rb");
    if (!f) die(std::string("cannot open ") + path);
    auto u64 = [&]() {
        uint64_t v;
        if (std::fread(&v, 8, 1, f) != 1) die("input file truncated");
        return v;
    };
    auto bytes = [&](std::vector<uint8_t>& v, size_t n) {
        v.resize(n);
        if (n && std::fread(v.data(), 1, n, f) != n) die("input file truncated");
    };
    char magic[8];
    if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, "TFVLENG1", 8)) die("bad input magic");
    Input in;
    in.ports = u64(), in.batch = u64(), in.beat_bytes = u64(), in.base = u64(), in.port_stride = u64();
    in.n_rows = u64(), in.k_chunks = u64(), in.n_groups = u64(), in.w_scale = u64();
    for (uint64_t b = 0; b < in.batch; b++) in.x_scale.push_back(u64());
    in.act_b_off = u64(), in.act_b_w = u64(), in.act_chunk_off = u64(), in.act_chunk_w = u64();
    in.act_data_off = u64(), in.act_data_w = u64();
    in.out_row_off = u64(), in.out_row_w = u64(), in.out_value_off = u64();
    uint64_t n_act = u64();
    size_t data_bytes = (in.act_data_w + 7) / 8;
    in.acts.resize(n_act);
    for (auto& a : in.acts) {
        a.b = u64(), a.chunk = u64();
        bytes(a.data, data_bytes);
    }
    uint64_t mem_len = u64();
    bytes(in.mem, mem_len);
    std::fclose(f);
    if (in.ports != NPORTS) die("input is for " + std::to_string(in.ports) + " ports, model has " +
                                std::to_string(NPORTS));
    return in;
}

// ---- one AXI read port ----------------------------------------------------------------------------
struct Burst {
    uint64_t addr, beats, due;  // due: first cycle its first beat may be presented
};

struct Port {
    // bound signals
    CData *arvalid, *arready, *arlen, *arsize, *arburst, *rvalid, *rready, *rlast, *rresp, *rid;
    std::function<uint64_t()> araddr;
    std::function<void(const uint8_t*, size_t)> rdata;
    // model state
    std::deque<Burst> bursts;
    uint64_t index = 0;  // beat of the front burst being presented
    bool presenting = false;
    // counters
    uint64_t beats = 0, ars = 0, ar_beats = 0, violations = 0, slverr_beats = 0;
    int64_t first_ar = -1, last_ar = -1, first_beat = -1, last_beat = -1;
    uint64_t r_wait_latency = 0;  // R idle, a burst in flight but not due yet (after the first AR)
    uint64_t r_wait_no_burst = 0;  // R idle, nothing requested (between first AR and last beat)
    uint64_t r_backpressure = 0;  // rvalid & ~rready
    uint64_t ar_stalled = 0;  // arvalid & ~arready
    uint64_t max_in_flight_bursts = 0;
};

#define BIND_PORT(i)                                                                             \
    do {                                                                                         \
        Port& P = ports[i];                                                                      \
        P.arvalid = &top->axi##i##___05Farvalid;                                                     \
        P.arready = &top->axi##i##___05Farready;                                                     \
        P.arlen = &top->axi##i##___05Farlen;                                                         \
        P.arsize = &top->axi##i##___05Farsize;                                                       \
        P.arburst = &top->axi##i##___05Farburst;                                                     \
        P.rvalid = &top->axi##i##___05Frvalid;                                                       \
        P.rready = &top->axi##i##___05Frready;                                                       \
        P.rlast = &top->axi##i##___05Frlast;                                                         \
        P.rresp = &top->axi##i##___05Frresp;                                                         \
        P.rid = &top->axi##i##___05Frid;                                                             \
        P.araddr = [top]() { return uint64_t(top->axi##i##___05Faraddr); };                          \
        P.rdata = [top](const uint8_t* p, size_t n) { set_bytes(top->axi##i##___05Frdata, p, n); }; \
    } while (0)

static double parse_prob(const char* s) {
    double p = std::atof(s);
    if (p < 0 || p >= 1) die("probabilities must be in [0, 1)");
    return p;
}

int main(int argc, char** argv) {
    if (argc < 3) die("usage: engine_sim IN.bin OUT.json [--latency L] [--ar-stall P] [--out-stall P] "
                      "[--seed S] [--slverr ADDR]... [--max-cycles N]");
    const char* in_path = argv[1];
    const char* out_path = argv[2];
    uint64_t latency = 100, seed = 1, max_cycles = 0;
    double ar_stall = 0, out_stall = 0;
    std::set<uint64_t> slverr;
    for (int a = 3; a < argc; a++) {
        std::string k = argv[a];
        if (a + 1 >= argc) die("missing value for " + k);
        const char* v = argv[++a];
        if (k == "--latency") latency = std::strtoull(v, nullptr, 0);
        else if (k == "--ar-stall") ar_stall = parse_prob(v);
        else if (k == "--out-stall") out_stall = parse_prob(v);
        else if (k == "--seed") seed = std::strtoull(v, nullptr, 0);
        else if (k == "--slverr") slverr.insert(std::strtoull(v, nullptr, 0));
        else if (k == "--max-cycles") max_cycles = std::strtoull(v, nullptr, 0);
        else die("unknown option " + k);
    }
    if (latency < 1) die("latency must be >= 1");

    Input in = read_input(in_path);
    const uint64_t bb = in.beat_bytes;
    int arsize_want = 0;
    while ((1ull << arsize_want) < bb) arsize_want++;
    const uint64_t expected_beats = in.k_chunks * in.n_groups;  // per port
    if (!max_cycles) {
        uint64_t beats = expected_beats;
        max_cycles = 4 * (beats + latency) + 100000;
    }

    VerilatedContext ctx;
    ctx.randReset(0);
    Vengine* top = new Vengine{&ctx};
    std::vector<Port> ports(NPORTS);
    BIND_PORT(0);
#if NPORTS > 1
    BIND_PORT(1);
#endif
#if NPORTS > 2
    BIND_PORT(2);
#endif
#if NPORTS > 3
    BIND_PORT(3);
#endif
#if NPORTS > 4
    BIND_PORT(4);
#endif
#if NPORTS > 5
    BIND_PORT(5);
#endif
#if NPORTS > 6
    BIND_PORT(6);
#endif
#if NPORTS > 7
    BIND_PORT(7);
#endif
#if NPORTS > 8
#error "harness binds at most 8 ports"
#endif
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uni(0.0, 1.0);

    uint64_t now = 0;  // cycle index, counted from the start edge once started
    bool started = false;

    struct Row {
        uint64_t row, cycle;
        std::vector<int32_t> v;
    };
    std::vector<Row> rows;
    uint64_t out_stalls = 0, out_idle = 0;

    // one clock cycle: drive inputs from the model, settle, sample handshakes, clock edge, update model
    auto cycle = [&]() {
        for (auto& P : ports) {
            *P.arready = (ar_stall > 0 && uni(rng) < ar_stall) ? 0 : 1;
            P.presenting = !P.bursts.empty() && P.bursts.front().due <= now;
            *P.rvalid = P.presenting;
            *P.rid = 0;
            if (P.presenting) {
                const Burst& b = P.bursts.front();
                uint64_t addr = b.addr + P.index * bb;
                *P.rlast = P.index + 1 == b.beats;
                if (addr < in.base || addr + bb > in.base + in.mem.size()) {
                    static const uint8_t zeros[256] = {0};
                    P.rdata(zeros, bb);
                    *P.rresp = 3;
                } else {
                    P.rdata(&in.mem[addr - in.base], bb);
                    *P.rresp = slverr.count(addr) ? 2 : 0;
                }
            } else {
                *P.rlast = 0;
                *P.rresp = 0;
            }
        }
        top->out___05Fready = (out_stall > 0 && uni(rng) < out_stall) ? 0 : 1;
        top->clk = 0;
        top->eval();
        // sample what happens at this edge
        bool out_fire = top->out___05Fvalid && top->out___05Fready;
        if (started) {
            if (top->out___05Fvalid && !top->out___05Fready) out_stalls++;
            if (!top->out___05Fvalid) out_idle++;
        }
        if (out_fire) {
            Row r;
            r.cycle = now;
            r.row = get_field(top->out___05Fpayload, int(in.out_row_off), int(in.out_row_w));
            for (uint64_t b = 0; b < in.batch; b++)
                r.v.push_back(int32_t(uint32_t(get_field(top->out___05Fpayload, int(in.out_value_off + 32 * b), 32))));
            rows.push_back(std::move(r));
        }
        for (auto& P : ports) {
            bool ar_fire = *P.arvalid && *P.arready;
            if (*P.arvalid && !*P.arready) P.ar_stalled++;
            if (ar_fire) {
                uint64_t addr = P.araddr(), beats = uint64_t(*P.arlen) + 1;
                if (*P.arburst != 1 || *P.arsize != arsize_want || addr % bb ||
                    addr / 4096 != (addr + beats * bb - 1) / 4096 || addr < in.base ||
                    addr + beats * bb > in.base + in.mem.size())
                    P.violations++;
                P.bursts.push_back({addr, beats, now + latency});
                P.ars++;
                P.ar_beats += beats;
                if (P.first_ar < 0) P.first_ar = int64_t(now);
                P.last_ar = int64_t(now);
                if (P.bursts.size() > P.max_in_flight_bursts) P.max_in_flight_bursts = P.bursts.size();
            }
            if (P.presenting) {
                if (*P.rready) {
                    const Burst& b = P.bursts.front();
                    if (*P.rresp >= 2) P.slverr_beats++;
                    P.beats++;
                    if (P.first_beat < 0) P.first_beat = int64_t(now);
                    P.last_beat = int64_t(now);
                    if (++P.index == b.beats) {
                        P.bursts.pop_front();
                        P.index = 0;
                    }
                } else {
                    P.r_backpressure++;
                }
            } else if (P.first_ar >= 0 && P.ar_beats > P.beats) {
                if (!P.bursts.empty()) P.r_wait_latency++;
            } else if (P.first_ar >= 0 && P.beats < expected_beats) {
                P.r_wait_no_burst++;
            }
        }
        top->clk = 1;
        top->eval();
        now++;
    };

    // reset
    top->rst = 1;
    top->start = 0;
    top->act___05Fvalid = 0;
    for (int i = 0; i < 4; i++) cycle();
    top->rst = 0;
    cycle();

    // activations
    for (const auto& a : in.acts) {
        clear_all(top->act___05Fpayload);
        set_field(top->act___05Fpayload, int(in.act_b_off), int(in.act_b_w), a.b);
        set_field(top->act___05Fpayload, int(in.act_chunk_off), int(in.act_chunk_w), a.chunk);
        set_field_bytes(top->act___05Fpayload, int(in.act_data_off), int(in.act_data_w), a.data.data());
        top->act___05Fvalid = 1;
        cycle();
    }
    top->act___05Fvalid = 0;

    // pass registers
    top->base = in.base;
    top->port_stride = in.port_stride;
    top->n_rows = in.n_rows;
    top->k_chunks = in.k_chunks;
    top->n_groups = in.n_groups;
    set_field(top->w_scale, 0, 32, in.w_scale);
    for (uint64_t b = 0; b < in.batch; b++) set_field(top->x_scale, int(32 * b), 32, in.x_scale[b]);
    cycle();
    cycle();

    // start: the start edge is cycle 0 of the pass
    top->start = 1;
    now = 0;
    started = true;
    std::clock_t c0 = std::clock();
    auto t0 = std::chrono::steady_clock::now();
    cycle();
    top->start = 0;
    bool done = false;
    uint64_t limit = max_cycles;
    while (now < limit) {
        cycle();
        if (top->done) {
            done = true;
            break;
        }
    }
    auto t1 = std::chrono::steady_clock::now();
    double wall = std::chrono::duration<double>(t1 - t0).count();
    double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
    // clock periods from the start edge (edge 0) to the edge that set done
    uint64_t cycles = now - 1;
    bool error = top->error;
    bool busy = top->busy;
    top->final();

    FILE* f = std::fopen(out_path, "w");
    if (!f) die(std::string("cannot write ") + out_path);
    std::fprintf(f, "{\"done\": %d, \"error\": %d, \"busy\": %d, \"cycles\": %" PRIu64
                    ", \"wall_s\": %.6f, \"cpu_s\": %.6f,\n",
                 int(done), int(error), int(busy), cycles, wall, cpu);
    std::fprintf(f, " \"latency\": %" PRIu64 ", \"out_stall_cycles\": %" PRIu64 ", \"out_idle_cycles\": %" PRIu64
                    ",\n \"ports\": [\n",
                 latency, out_stalls, out_idle);
    for (size_t i = 0; i < ports.size(); i++) {
        const Port& P = ports[i];
        std::fprintf(f,
                     "  {\"beats\": %" PRIu64 ", \"ars\": %" PRIu64 ", \"ar_beats\": %" PRIu64
                     ", \"violations\": %" PRIu64 ", \"slverr_beats\": %" PRIu64 ", \"first_ar\": %" PRId64
                     ", \"last_ar\": %" PRId64 ", \"first_beat\": %" PRId64 ", \"last_beat\": %" PRId64
                     ", \"r_wait_latency\": %" PRIu64 ", \"r_wait_no_burst\": %" PRIu64
                     ", \"r_backpressure\": %" PRIu64 ", \"ar_stalled\": %" PRIu64
                     ", \"max_in_flight_bursts\": %" PRIu64 ", \"bursts_left\": %zu}%s\n",
                     P.beats, P.ars, P.ar_beats, P.violations, P.slverr_beats, P.first_ar, P.last_ar,
                     P.first_beat, P.last_beat, P.r_wait_latency, P.r_wait_no_burst, P.r_backpressure,
                     P.ar_stalled, P.max_in_flight_bursts, P.bursts.size(), i + 1 < ports.size() ? "," : "");
    }
    std::fprintf(f, " ],\n \"rows\": [");
    for (size_t i = 0; i < rows.size(); i++) {
        std::fprintf(f, "%s[%" PRIu64, i ? ",\n  " : "\n  ", rows[i].row);
        for (int32_t v : rows[i].v) std::fprintf(f, ", %d", v);
        std::fprintf(f, "]");
    }
    std::fprintf(f, "\n ],\n \"row_cycles\": [");
    for (size_t i = 0; i < rows.size(); i++) std::fprintf(f, "%s%" PRIu64, i ? ", " : "", rows[i].cycle);
    std::fprintf(f, "]}\n");
    std::fclose(f);
    delete top;
    return done ? 0 : 3;
}
