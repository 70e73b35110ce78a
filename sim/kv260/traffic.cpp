// Traffic generator for the virtual KV260's memory model (ddr_model.h): DMA-like masters, one per HP
// port, that reproduce the published KV260 bandwidth measurements (sim/kv260/ddr.py holds the named
// scenarios and docs/virtual-kv260.md the calibration table).
//
// Built by sim/kv260/ddr.py:  g++ -O2 -std=c++17 traffic.cpp ddr_model.cpp -o traffic
//
// Stream mode (default) prints one JSON object on stdout:
//   traffic [--ports 0,1,2,3] [--phases BEATS[:PER_SUM],...] [--runs N] [--gap CYCLES]
//           [--burst BEATS] [--outstanding N] [--write-width 4|16] [--write-burst BEATS]
//           [--write-outstanding N] [--latency L] [--set FIELD=VALUE]... [--max-cycles N]
//   Each master is an AXI DMA MM2S feeding an engine that takes one beat a cycle: it keeps up to
//   --outstanding read bursts of --burst beats in flight (split at 4 KiB, as the DMA does) until the run's
//   BEATS are read. With PER_SUM > 0 the engine makes one int32 result per PER_SUM beats read and an S2MM
//   writes them as they come: --write-width bytes a beat (4: a 32-bit memory port, narrow AXI beats;
//   16: 128-bit, four results a beat), bursts of up to --write-burst beats, each burst's AW sent when its
//   first beat's data exists. A run ends when every port has read its beats and had its writes
//   answered; the next run starts --gap cycles later (the CPU re-arming the engines); runs cycle through
//   the --phases list. Bandwidth is read bytes over the cycles from the first AR to the last R beat.
//
// Script mode: traffic --script IN.bin --out OUT.bin runs the bursts listed in IN.bin (format in
//   run_script below) with random R/B back-pressure and W gaps, optionally freezing the model for a
//   while, and writes every R beat, every BRESP and the final memory to OUT.bin (checked in Python).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "ddr_model.h"

using namespace vkv260;

namespace {

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "traffic: %s\n", msg.c_str());
    std::exit(2);
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t i = 0;
    while (true) {
        size_t j = s.find(sep, i);
        out.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
        if (j == std::string::npos) break;
        i = j + 1;
    }
    return out;
}

uint64_t parse_u64(const std::string& s, const char* what) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(s.c_str(), &end, 0);
    if (s.empty() || *end) die(std::string("bad ") + what + ": '" + s + "'");
    return v;
}

double parse_f64(const std::string& s, const char* what) {
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end) die(std::string("bad ") + what + ": '" + s + "'");
    return v;
}

// --set FIELD=VALUE: the DdrConfig fields a sweep may change
void set_field(DdrConfig& c, const std::string& kv) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) die("--set wants FIELD=VALUE, got '" + kv + "'");
    std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
    struct D { const char* name; double* p; };
    struct I { const char* name; int* p; };
    const D ds[] = {{"pl_mhz", &c.pl_mhz}, {"ddr_mts", &c.ddr_mts}, {"t_refi_ns", &c.t_refi_ns},
                    {"t_rfc_ns", &c.t_rfc_ns}, {"t_wtr_l_ns", &c.t_wtr_l_ns}, {"t_rp_ns", &c.t_rp_ns},
                    {"t_rcd_ns", &c.t_rcd_ns}, {"switch_extra", &c.switch_extra}};
    const I is[] = {{"ddr_bus_bytes", &c.ddr_bus_bytes}, {"cl", &c.cl}, {"rtw_idle_nck", &c.rtw_idle_nck},
                    {"wr_starve", &c.wr_starve}, {"wr_high", &c.wr_high}, {"wr_run_max", &c.wr_run_max},
                    {"afi_cmd_depth", &c.afi_cmd_depth}, {"afi_rd_issue", &c.afi_rd_issue},
                    {"afi_rfifo_beats", &c.afi_rfifo_beats},
                    {"afi_wfifo_beats", &c.afi_wfifo_beats}, {"afi_subburst", &c.afi_subburst},
                    {"r_bubble_every", &c.r_bubble_every}, {"wr_piece_bytes", &c.wr_piece_bytes},
                    {"b_latency", &c.b_latency}, {"default_read_latency", &c.default_read_latency},
                    {"read_jitter", &c.read_jitter}, {"read_latency", &c.read_latency}};
    for (const auto& d : ds)
        if (k == d.name) { *d.p = parse_f64(v, d.name); return; }
    for (const auto& i : is)
        if (k == i.name) { *i.p = int(parse_u64(v, i.name)); return; }
    if (k == "xpi_of_port") {
        auto xs = split(v, ':');
        if (xs.size() != MAX_PORTS) die("xpi_of_port wants four values a:b:c:d");
        for (int p = 0; p < MAX_PORTS; p++) c.xpi_of_port[p] = int(parse_u64(xs[size_t(p)], "xpi"));
        return;
    }
    die("unknown DdrConfig field '" + k + "'");
}

void config_json(const DdrConfig& c, std::string& o) {
    char b[1024];
    std::snprintf(b, sizeof b,
                  "{\"pl_mhz\":%g,\"ddr_mts\":%g,\"ddr_bus_bytes\":%d,\"t_refi_ns\":%g,\"t_rfc_ns\":%g,\"cl\":%d,"
                  "\"rtw_idle_nck\":%d,\"t_wtr_l_ns\":%g,\"t_rp_ns\":%g,\"t_rcd_ns\":%g,"
                  "\"switch_extra\":%g,\"wr_starve\":%d,\"wr_high\":%d,\"wr_run_max\":%d,\"afi_cmd_depth\":%d,"
                  "\"afi_rd_issue\":%d,\"afi_rfifo_beats\":%d,\"afi_wfifo_beats\":%d,\"afi_subburst\":%d,\"r_bubble_every\":%d,"
                  "\"wr_piece_bytes\":%d,\"b_latency\":%d,\"xpi_of_port\":[%d,%d,%d,%d],"
                  "\"default_read_latency\":%d,\"read_jitter\":%d,\"read_latency\":%d,\"seed\":%" PRIu64 "}",
                  c.pl_mhz, c.ddr_mts, c.ddr_bus_bytes, c.t_refi_ns, c.t_rfc_ns, c.cl, c.rtw_idle_nck, c.t_wtr_l_ns,
                  c.t_rp_ns, c.t_rcd_ns, c.switch_extra, c.wr_starve, c.wr_high, c.wr_run_max,
                  c.afi_cmd_depth, c.afi_rd_issue, c.afi_rfifo_beats, c.afi_wfifo_beats, c.afi_subburst, c.r_bubble_every,
                  c.wr_piece_bytes, c.b_latency, c.xpi_of_port[0], c.xpi_of_port[1], c.xpi_of_port[2],
                  c.xpi_of_port[3], c.default_read_latency, c.read_jitter, c.read_latency, c.seed);
    o += b;
}

// ---- stream mode -----------------------------------------------------------------------------------
struct Phase {
    uint64_t beats;    // read beats per port per run
    uint64_t per_sum;  // read beats per int32 result (0: no writes)
};

struct Opts {
    std::vector<int> ports{0, 1, 2, 3};
    std::vector<Phase> phases{{65536, 0}};
    uint64_t runs = 1, gap = 0, max_cycles = 2'000'000'000ull;
    int burst = 64, outstanding = 8;
    int write_width = 16, write_burst = 256, write_outstanding = 4;
};

struct Master {
    int port;
    uint64_t rbase, wbase;  // this port's read region and result buffer
    // current run
    uint64_t rd_total = 0, rd_req = 0, rd_got = 0;
    int rd_out = 0;
    uint64_t per_sum = 0, sums_total = 0, wbytes = 0, wbeats = 0;
    uint64_t aw_beats = 0, w_sent = 0;  // beats covered by sent AWs, beats sent on W
    int w_out = 0;                      // bursts awaiting B
    std::vector<uint64_t> burst_end;    // W beat index where each sent burst ends (ring)
    size_t be_head = 0, be_count = 0;
    bool done = true;
    uint64_t rd_done = 0;
    // totals
    uint64_t read_bytes = 0, write_bytes = 0, first = ~0ull, last = 0;
};

int run_stream(const Opts& o, DdrConfig cfg) {
    const int wsize = o.write_width == 4 ? 2 : 4;
    if (o.write_width != 4 && o.write_width != 16) die("--write-width must be 4 or 16");
    uint64_t max_beats = 0;
    for (const Phase& ph : o.phases) max_beats = std::max(max_beats, ph.beats);
    // each port: its read region, then room for its results (at most one int32 per read beat)
    const uint64_t region = (max_beats * BEAT_BYTES + 4 * max_beats + 2 * 4096 + 4095) & ~4095ull;
    const uint64_t phys = 0x8'0000'0000ull;
    const uint64_t mem_bytes = region * MAX_PORTS;
    std::vector<uint8_t> mem(mem_bytes);
    for (uint64_t i = 0; i < mem_bytes; i += 64) mem[i] = uint8_t(i >> 6);
    DdrModel ddr(cfg, mem.data(), mem_bytes, phys);

    std::vector<Master> ms;
    for (int p : o.ports) {
        Master m;
        m.port = p;
        m.rbase = phys + uint64_t(p) * region;
        m.wbase = m.rbase + ((max_beats * BEAT_BYTES + 4095) & ~4095ull);
        m.burst_end.assign(size_t(o.write_outstanding) + 1, 0);
        ms.push_back(m);
    }
    struct RunRec {
        size_t phase;
        uint64_t start;
        uint64_t done[MAX_PORTS];
    };
    std::vector<RunRec> recs;
    const int spb = o.write_width / 4;  // results per W beat
    uint8_t wdata[BEAT_BYTES];
    uint64_t result_counter = 0;

    auto start_run = [&](uint64_t run, uint64_t now) {
        const Phase& ph = o.phases[size_t(run % o.phases.size())];
        RunRec r{size_t(run % o.phases.size()), now, {0, 0, 0, 0}};
        recs.push_back(r);
        for (Master& m : ms) {
            m.rd_total = ph.beats, m.rd_req = m.rd_got = 0, m.rd_out = 0;
            m.per_sum = ph.per_sum;
            m.sums_total = ph.per_sum ? ph.beats / ph.per_sum : 0;
            m.wbytes = m.sums_total * 4;
            m.wbeats = (m.wbytes + uint64_t(o.write_width) - 1) / uint64_t(o.write_width);
            m.aw_beats = m.w_sent = 0, m.w_out = 0, m.be_head = m.be_count = 0;
            m.done = false;
        }
    };

    uint64_t run = 0, now = 0, next_start = 0, end_cycle = 0;
    bool running = false;
    auto t0 = std::chrono::steady_clock::now();
    std::clock_t c0 = std::clock();
    while (now < o.max_cycles) {
        if (!running) {
            if (run == o.runs) break;
            if (now >= next_start) {
                start_run(run, now);
                running = true;
            }
        }
        if (running) {
            for (Master& m : ms) {
                if (m.done) continue;
                const int p = m.port;
                // read address: the MM2S keeps `outstanding` bursts in flight, never across 4 KiB
                if (m.rd_req < m.rd_total && m.rd_out < o.outstanding && ddr.ar_ready(p)) {
                    uint64_t addr = m.rbase + m.rd_req * BEAT_BYTES;
                    uint64_t to4k = (4096 - (addr & 4095)) / BEAT_BYTES;
                    uint64_t n = std::min<uint64_t>({uint64_t(o.burst), m.rd_total - m.rd_req, to4k});
                    ddr.ar(p, addr, int(n), 0);
                    m.rd_req += n;
                    m.rd_out++;
                    m.first = std::min(m.first, now);
                }
                // read data: the engine takes every beat offered
                if (ddr.r_valid(p)) {
                    const RBeat& b = ddr.r_front(p);
                    if (b.last) m.rd_out--;
                    ddr.r_pop(p);
                    m.rd_got++;
                    m.read_bytes += BEAT_BYTES;
                    m.last = now;
                    if (m.rd_got == m.rd_total) m.rd_done = now;
                }
                if (m.wbeats) {
                    uint64_t sums = std::min(m.sums_total, m.rd_got / m.per_sum);
                    auto beat_ready = [&](uint64_t k) {
                        return sums >= std::min((k + 1) * uint64_t(spb), m.sums_total);
                    };
                    // S2MM: a burst's AW once its first beat's data exists
                    if (m.aw_beats < m.wbeats && m.w_out < o.write_outstanding && beat_ready(m.aw_beats) &&
                        ddr.aw_ready(p)) {
                        uint64_t addr = m.wbase + m.aw_beats * uint64_t(o.write_width);
                        uint64_t to4k = (4096 - (addr & 4095)) / uint64_t(o.write_width);
                        uint64_t n = std::min<uint64_t>({uint64_t(o.write_burst), m.wbeats - m.aw_beats, to4k});
                        ddr.aw(p, addr, int(n), 0, wsize);
                        m.aw_beats += n;
                        m.burst_end[(m.be_head + m.be_count++) % m.burst_end.size()] = m.aw_beats;
                        m.w_out++;
                    }
                    if (m.w_sent < m.aw_beats && beat_ready(m.w_sent) && ddr.w_ready(p)) {
                        uint64_t addr = m.wbase + m.w_sent * uint64_t(o.write_width);
                        uint16_t strb;
                        std::memset(wdata, 0, sizeof wdata);
                        if (o.write_width == 4) {
                            int lane = int((addr >> 2) & 3);
                            strb = uint16_t(0xF << (4 * lane));
                            uint32_t v = uint32_t(result_counter++);
                            std::memcpy(wdata + 4 * lane, &v, 4);
                        } else {
                            uint64_t left = m.wbytes - m.w_sent * 16;
                            strb = left >= 16 ? 0xFFFF : uint16_t((1u << left) - 1);
                            for (int j = 0; j < 4; j++) {
                                uint32_t v = uint32_t(result_counter++);
                                std::memcpy(wdata + 4 * j, &v, 4);
                            }
                        }
                        m.w_sent++;
                        bool last = m.w_sent == m.burst_end[m.be_head];
                        if (last) m.be_head = (m.be_head + 1) % m.burst_end.size(), m.be_count--;
                        ddr.w(p, wdata, strb, last);
                        m.write_bytes += uint64_t(__builtin_popcount(strb));
                    }
                    if (ddr.b_valid(p)) {
                        ddr.b_pop(p);
                        m.w_out--;
                    }
                }
                if (m.rd_got == m.rd_total && m.w_sent == m.wbeats && m.aw_beats == m.wbeats && m.w_out == 0) {
                    m.done = true;
                    recs.back().done[p] = m.rd_done - recs.back().start;
                    end_cycle = std::max(end_cycle, m.rd_done + 1);
                }
            }
            bool all = true;
            for (const Master& m : ms) all = all && m.done;
            if (all) {
                running = false;
                run++;
                next_start = now + 1 + o.gap;
            }
        }
        ddr.tick();
        now++;
    }
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
    if (run < o.runs) die("did not finish within --max-cycles");

    const double hz = cfg.pl_mhz * 1e6;
    std::string out = "{";
    char b[512];
    uint64_t rb = 0, wb = 0;
    for (const Master& m : ms) rb += m.read_bytes, wb += m.write_bytes;
    std::snprintf(b, sizeof b,
                  "\"cycles\":%" PRIu64 ",\"read_bytes\":%" PRIu64 ",\"write_bytes\":%" PRIu64
                  ",\"total_gbps\":%.6f,\"write_gbps\":%.6f,\"ports\":[",
                  end_cycle, rb, wb, double(rb) / (double(end_cycle) / hz) / 1e9,
                  double(wb) / (double(end_cycle) / hz) / 1e9);
    out += b;
    uint64_t viol = 0;
    for (size_t i = 0; i < ms.size(); i++) {
        const Master& m = ms[i];
        viol += ddr.violations(m.port);
        std::snprintf(b, sizeof b,
                      "%s{\"port\":%d,\"read_bytes\":%" PRIu64 ",\"write_bytes\":%" PRIu64 ",\"first_cycle\":%" PRIu64
                      ",\"last_cycle\":%" PRIu64 ",\"gbps\":%.6f,\"errors\":%" PRIu64 "}",
                      i ? "," : "", m.port, m.read_bytes, m.write_bytes, m.first, m.last,
                      double(m.read_bytes) / (double(m.last - m.first + 1) / hz) / 1e9, ddr.stats(m.port).errors);
        out += b;
    }
    out += "],\"phases\":[";
    // per phase: the run's rate, and how much later HP1/HP2 finish than HP0/HP3 (when all four run)
    bool four = ms.size() == 4;
    for (size_t ph = 0; ph < o.phases.size(); ph++) {
        double cyc = 0, lag = 0, lag_min = 1e9, lag_max = -1e9;
        int n = 0;
        for (const RunRec& r : recs) {
            if (r.phase != ph) continue;
            uint64_t mx = 0;
            for (const Master& m : ms) mx = std::max(mx, r.done[m.port] + 1);
            cyc += double(mx);
            if (four) {
                double l = (double(r.done[1] + r.done[2]) + 2) / (double(r.done[0] + r.done[3]) + 2) - 1;
                lag += l, lag_min = std::min(lag_min, l), lag_max = std::max(lag_max, l);
            }
            n++;
        }
        double bytes = double(o.phases[ph].beats) * BEAT_BYTES * double(ms.size());
        std::snprintf(b, sizeof b,
                      "%s{\"read_beats\":%" PRIu64 ",\"beats_per_sum\":%" PRIu64
                      ",\"runs\":%d,\"gbps\":%.6f,\"lag_hp12\":%s}",
                      ph ? "," : "", o.phases[ph].beats, o.phases[ph].per_sum, n,
                      n ? bytes / (cyc / n / hz) / 1e9 : 0.0,
                      four && n ? std::to_string(lag / n).c_str() : "null");
        out += b;
    }
    ControllerStats cs = ddr.controller_stats();
    std::snprintf(b, sizeof b,
                  "],\"controller\":{\"read_subbursts\":%" PRIu64 ",\"write_pieces\":%" PRIu64
                  ",\"write_episodes\":%" PRIu64 ",\"refreshes\":%" PRIu64 ",\"data_bus_busy\":%.6f},"
                  "\"violations\":%" PRIu64 ",\"sim_cycles\":%" PRIu64 ",\"wall_s\":%.6f,\"cpu_s\":%.6f,"
                  "\"model_cycles_per_s\":%.1f,\"config\":",
                  cs.read_subbursts, cs.write_pieces, cs.write_episodes, cs.refreshes,
                  double(cs.data_busy_fp) / 65536.0 / double(std::max<uint64_t>(now, 1)), viol, now, wall, cpu,
                  double(now) / std::max(cpu, 1e-9));
    out += b;
    config_json(cfg, out);
    out += "}\n";
    std::fputs(out.c_str(), stdout);
    return 0;
}

// ---- script mode -----------------------------------------------------------------------------------
// IN.bin, little-endian: "VKDDRS01"; u64 phys_base, mem_bytes, seed, latency, freeze_at (0: none),
//   freeze_for, r_stall, b_stall, w_gap (per mille), outstanding, max_cycles; mem_bytes bytes (the
//   initial memory); u64 n_errors, each u64 kind (0 read, 1 write), lo, hi; u64 n_ops, each
//   u8 port, u8 write, u8 size_log2, u8 0, u32 beats, u32 id, u32 0, u64 addr, and for a write
//   beats x (16 data bytes, u16 strobes).
// OUT.bin: "VKDDRO01"; u64 finished, cycles, freeze_signals (ready/valid seen while frozen),
//   freeze_handshakes, violations; per op in order: a read: beats x (16 data bytes, u8 resp, u8 last,
//   u32 id), a write: u8 bresp, u32 id; then u64 mem_bytes and the final memory.
struct Op {
    int port, write, size, beats;
    uint32_t id;
    uint64_t addr;
    size_t wdata;  // offset of its W beats in the write-data pool
};

struct Reader {
    FILE* f;
    uint64_t u64() {
        uint64_t v;
        if (std::fread(&v, 8, 1, f) != 1) die("script truncated");
        return v;
    }
    void bytes(void* p, size_t n) {
        if (n && std::fread(p, 1, n, f) != n) die("script truncated");
    }
};

int run_script(const char* in_path, const char* out_path, DdrConfig cfg) {
    FILE* f = std::fopen(in_path, "rb");
    if (!f) die(std::string("cannot open ") + in_path);
    Reader rd{f};
    char magic[8];
    rd.bytes(magic, 8);
    if (std::memcmp(magic, "VKDDRS01", 8)) die("bad script magic");
    uint64_t phys = rd.u64(), mem_bytes = rd.u64(), seed = rd.u64(), latency = rd.u64();
    uint64_t freeze_at = rd.u64(), freeze_for = rd.u64(), r_stall = rd.u64(), b_stall = rd.u64(), w_gap = rd.u64();
    uint64_t outstanding = rd.u64(), max_cycles = rd.u64();
    std::vector<uint8_t> mem(mem_bytes);
    rd.bytes(mem.data(), mem_bytes);
    cfg.seed = seed;
    if (latency) cfg.read_latency = int(latency);
    DdrModel ddr(cfg, mem.data(), mem_bytes, phys);
    for (uint64_t n = rd.u64(); n; n--) {
        uint64_t kind = rd.u64(), lo = rd.u64(), hi = rd.u64();
        if (kind == 0) ddr.add_read_error(lo, hi);
        else ddr.add_write_error(lo, hi);
    }
    std::vector<Op> ops(rd.u64());
    std::vector<uint8_t> pool;
    for (Op& op : ops) {
        uint8_t h[4];
        rd.bytes(h, 4);
        uint32_t w[3];
        rd.bytes(w, 12);
        op.port = h[0], op.write = h[1], op.size = h[2], op.beats = int(w[0]), op.id = w[1];
        op.addr = rd.u64();
        if (op.port < 0 || op.port >= MAX_PORTS) die("bad port in script");
        op.wdata = pool.size();
        if (op.write) {
            pool.resize(pool.size() + size_t(op.beats) * 18);
            rd.bytes(pool.data() + op.wdata, size_t(op.beats) * 18);
        }
    }
    std::fclose(f);

    // results per op: read beats (16 + resp + last + id) or a write's bresp + id
    std::vector<size_t> res_off(ops.size());
    size_t res_size = 0;
    for (size_t i = 0; i < ops.size(); i++) {
        res_off[i] = res_size;
        res_size += ops[i].write ? 5 : size_t(ops[i].beats) * 22;
    }
    std::vector<uint8_t> res(res_size);

    struct PortState {
        std::vector<size_t> ops;  // indices into ops, in order
        size_t next = 0;          // next op to issue
        std::vector<size_t> rq, wq, bq;  // issued reads awaiting R, writes awaiting W beats, awaiting B
        size_t rq_h = 0, wq_h = 0, bq_h = 0;
        int r_beat = 0, w_beat = 0;
        int out = 0, out_write = -1;  // outstanding ops and their kind
    };
    PortState ps[MAX_PORTS];
    for (size_t i = 0; i < ops.size(); i++) ps[ops[i].port].ops.push_back(i);
    uint64_t rng = seed * 0x2545F4914F6CDD1Dull + 7;
    auto chance = [&](uint64_t per_mille) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        return rng % 1000 < per_mille;
    };

    size_t remaining = ops.size();
    uint64_t now = 0, freeze_signals = 0, freeze_handshakes = 0;
    while (remaining && now < max_cycles) {
        bool in_freeze = freeze_at && now >= freeze_at && now < freeze_at + freeze_for;
        if (freeze_at && now == freeze_at) ddr.set_frozen(true);
        if (freeze_at && now == freeze_at + freeze_for) ddr.set_frozen(false);
        for (int p = 0; p < MAX_PORTS; p++) {
            PortState& s = ps[p];
            if (in_freeze) {
                freeze_signals += ddr.ar_ready(p) + ddr.aw_ready(p) + ddr.w_ready(p) + ddr.r_valid(p) + ddr.b_valid(p);
            }
            // issue the next op; reads and writes do not overlap on a port (a barrier between kinds)
            if (s.next < s.ops.size()) {
                const Op& op = ops[s.ops[s.next]];
                bool kind_ok = s.out == 0 || s.out_write == op.write;
                if (kind_ok && s.out < int(outstanding)) {
                    bool rdy = op.write ? ddr.aw_ready(p) : ddr.ar_ready(p);
                    if (rdy) {
                        if (op.write) {
                            ddr.aw(p, op.addr, op.beats, op.id, op.size);
                            s.wq.push_back(s.ops[s.next]);
                        } else {
                            ddr.ar(p, op.addr, op.beats, op.id, op.size);
                            s.rq.push_back(s.ops[s.next]);
                        }
                        s.out++, s.out_write = op.write, s.next++;
                        freeze_handshakes += in_freeze;
                    }
                }
            }
            if (s.wq_h < s.wq.size() && !chance(w_gap) && ddr.w_ready(p)) {
                const Op& op = ops[s.wq[s.wq_h]];
                const uint8_t* src = pool.data() + op.wdata + size_t(s.w_beat) * 18;
                uint16_t strb;
                std::memcpy(&strb, src + 16, 2);
                bool last = s.w_beat == op.beats - 1;
                ddr.w(p, src, strb, last);
                freeze_handshakes += in_freeze;
                if (last) {
                    s.bq.push_back(s.wq[s.wq_h++]);
                    s.w_beat = 0;
                } else {
                    s.w_beat++;
                }
            }
            if (s.rq_h < s.rq.size() && ddr.r_valid(p) && !chance(r_stall)) {
                size_t oi = s.rq[s.rq_h];
                const RBeat& b = ddr.r_front(p);
                uint8_t* dst = res.data() + res_off[oi] + size_t(s.r_beat) * 22;
                std::memcpy(dst, b.data, 16);
                dst[16] = b.resp, dst[17] = b.last;
                std::memcpy(dst + 18, &b.id, 4);
                ddr.r_pop(p);
                freeze_handshakes += in_freeze;
                if (++s.r_beat == ops[oi].beats) {
                    s.r_beat = 0, s.rq_h++, s.out--, remaining--;
                }
            }
            if (s.bq_h < s.bq.size() && ddr.b_valid(p) && !chance(b_stall)) {
                size_t oi = s.bq[s.bq_h++];
                BResp r = ddr.b_front(p);
                res[res_off[oi]] = r.resp;
                std::memcpy(res.data() + res_off[oi] + 1, &r.id, 4);
                ddr.b_pop(p);
                freeze_handshakes += in_freeze;
                s.out--, remaining--;
            }
        }
        ddr.tick();
        now++;
    }
    uint64_t viol = 0;
    for (int p = 0; p < MAX_PORTS; p++) viol += ddr.violations(p);
    FILE* o = std::fopen(out_path, "wb");
    if (!o) die(std::string("cannot write ") + out_path);
    uint64_t hdr[] = {remaining == 0, now, freeze_signals, freeze_handshakes, viol};
    std::fwrite("VKDDRO01", 1, 8, o);
    std::fwrite(hdr, 8, 5, o);
    std::fwrite(res.data(), 1, res.size(), o);
    std::fwrite(&mem_bytes, 8, 1, o);
    std::fwrite(mem.data(), 1, mem.size(), o);
    std::fclose(o);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Opts o;
    DdrConfig cfg;
    std::string script, out;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value after " + a);
            return argv[++i];
        };
        if (a == "--ports") {
            o.ports.clear();
            for (auto& s : split(val(), ',')) {
                uint64_t p = parse_u64(s, "port");
                if (p >= MAX_PORTS) die("port out of range");
                o.ports.push_back(int(p));
            }
        } else if (a == "--phases") {
            o.phases.clear();
            for (auto& s : split(val(), ',')) {
                auto f = split(s, ':');
                Phase ph{parse_u64(f[0], "phase beats"), f.size() > 1 ? parse_u64(f[1], "beats per sum") : 0};
                if (!ph.beats) die("a phase needs at least one beat");
                o.phases.push_back(ph);
            }
        } else if (a == "--runs") {
            o.runs = parse_u64(val(), "runs");
        } else if (a == "--gap") {
            o.gap = parse_u64(val(), "gap");
        } else if (a == "--burst") {
            o.burst = int(parse_u64(val(), "burst"));
        } else if (a == "--outstanding") {
            o.outstanding = int(parse_u64(val(), "outstanding"));
        } else if (a == "--write-width") {
            o.write_width = int(parse_u64(val(), "write width"));
        } else if (a == "--write-burst") {
            o.write_burst = int(parse_u64(val(), "write burst"));
        } else if (a == "--write-outstanding") {
            o.write_outstanding = int(parse_u64(val(), "write outstanding"));
        } else if (a == "--latency") {
            cfg.read_latency = int(parse_u64(val(), "latency"));
        } else if (a == "--seed") {
            cfg.seed = parse_u64(val(), "seed");
        } else if (a == "--set") {
            set_field(cfg, val());
        } else if (a == "--max-cycles") {
            o.max_cycles = parse_u64(val(), "max cycles");
        } else if (a == "--script") {
            script = val();
        } else if (a == "--out") {
            out = val();
        } else {
            die("unknown option " + a);
        }
    }
    if (o.burst < 1 || o.burst > 256 || o.write_burst < 1 || o.write_burst > 256) die("bursts are 1..256 beats");
    if (o.outstanding < 1 || o.write_outstanding < 1) die("outstanding must be >= 1");
    if (!script.empty()) {
        if (out.empty()) die("--script needs --out");
        return run_script(script.c_str(), out.c_str(), cfg);
    }
    return run_stream(o, cfg);
}
