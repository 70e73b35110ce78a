// The virtual KV260: the accelerator's Verilated top (rtl/accel.py) on the modelled PS memory system
// (ddr_model.h) behind its four HP ports, an AXI4-Lite master on its register slave (what the A53 does
// through M_AXI_HPM0_FPD) and its interrupt line, as a shared library with a small C API for Python
// (sim/kv260/board.py loads it with ctypes).
//
// Built by sim/kv260/board.py:
//   verilator --cc --exe --build --prefix Vaccel -CFLAGS -fPIC -LDFLAGS -shared -o libvkv260.so \
//             board.cpp ddr_model.cpp accel.v
//
// One simulated cycle = one pl_clk0 cycle: the HP ports' inputs are set from the memory model's state,
// the design settles, the handshakes that fire are handed to the model, then the clock edge and the
// model's tick. Register accesses take simulated cycles like real AXI4-Lite transactions.
//
// Settling costs a whole evaluation of the design's input-driven logic. When no HP-port output depends
// combinationally on an input (sim/kv260/board.py checks Verilator's input-combinational region for
// writes to outputs after each build), the outputs after the last edge are already the settled ones: the
// step then evaluates once, at the edge, and marks the clock's previous value low so that Verilator
// sees the rising edge without a falling-edge evaluation (about a fifth of the time per cycle).
// vk_set_settle(b, 1) forces the two evaluations; AXI4-Lite steps always settle.
#include <verilated.h>

#include <time.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "Vaccel.h"
#include "Vaccel___024root.h"
#include "ddr_model.h"

using vkv260::BEAT_BYTES;

namespace {

// Verilator escapes the "__" of Amaranth's port names (hp0__araddr) as "___05F".
struct HpPins {
    CData *arvalid, *arready, *arlen, *arid, *rvalid, *rready, *rresp, *rlast, *rid;
    QData* araddr;
    VlWide<4>* rdata;
    CData *awvalid, *awready, *awlen, *awid, *wvalid, *wready, *wlast, *bvalid, *bready, *bresp, *bid;
    QData* awaddr;
    VlWide<4>* wdata;
    SData* wstrb;
};

#define HP_PINS(t, i)                                                                                     \
    HpPins {                                                                                               \
        &t->hp##i##___05Farvalid, &t->hp##i##___05Farready, &t->hp##i##___05Farlen, &t->hp##i##___05Farid,  \
            &t->hp##i##___05Frvalid, &t->hp##i##___05Frready, &t->hp##i##___05Frresp,                      \
            &t->hp##i##___05Frlast, &t->hp##i##___05Frid, &t->hp##i##___05Faraddr, &t->hp##i##___05Frdata,  \
            &t->hp##i##___05Fawvalid, &t->hp##i##___05Fawready, &t->hp##i##___05Fawlen,                     \
            &t->hp##i##___05Fawid, &t->hp##i##___05Fwvalid, &t->hp##i##___05Fwready,                        \
            &t->hp##i##___05Fwlast, &t->hp##i##___05Fbvalid, &t->hp##i##___05Fbready,                       \
            &t->hp##i##___05Fbresp, &t->hp##i##___05Fbid, &t->hp##i##___05Fawaddr,                          \
            &t->hp##i##___05Fwdata, &t->hp##i##___05Fwstrb                                                  \
    }

constexpr int NPORTS = 4;

}  // namespace

struct vk_board {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vaccel> top;
    uint8_t* mem = nullptr;
    uint64_t mem_bytes = 0;
    uint64_t phys_base = 0;
    std::unique_ptr<vkv260::DdrModel> ddr;
    HpPins pins[NPORTS];
    uint64_t cycle = 0;
    double eval_s = 0;  // wall seconds spent in run loops (simulation speed)
    double eval_cpu_s = 0;  // CPU seconds of this thread in run loops (speed on a busy machine)
    uint64_t run_cycles = 0;
    // AXI4-Lite handshake inputs sampled before the edge of the last step (when lite_sample is set)
    bool settle = true;  // evaluate before the edge (vk_set_settle); cleared by board.py when not needed
    bool lite_sample = false, lite_awready = false, lite_wready = false, lite_bvalid = false;
    bool lite_arready = false, lite_rvalid = false;
    uint32_t lite_rdata = 0;
    int lite_resp = 0;

    // one pl_clk0 cycle; the AXI4-Lite inputs are set by the caller before
    void step() {
        for (int p = 0; p < NPORTS; p++) {
            HpPins& h = pins[p];
            *h.arready = ddr->ar_ready(p);
            bool rv = ddr->r_valid(p);
            *h.rvalid = rv;
            if (rv) {
                const vkv260::RBeat& b = ddr->r_front(p);
                std::memcpy(h.rdata->data(), b.data, BEAT_BYTES);  // little-endian host
                *h.rresp = b.resp;
                *h.rlast = b.last;
                *h.rid = CData(b.id);
            }
            *h.awready = ddr->aw_ready(p);
            *h.wready = ddr->w_ready(p);
            bool bv = ddr->b_valid(p);
            *h.bvalid = bv;
            if (bv) {
                vkv260::BResp r = ddr->b_front(p);
                *h.bresp = r.resp;
                *h.bid = CData(r.id);
            }
        }
        if (settle || lite_sample) {
            top->clk = 0;
            top->eval();
        }
        for (int p = 0; p < NPORTS; p++) {
            HpPins& h = pins[p];
            if (*h.arvalid && *h.arready) ddr->ar(p, *h.araddr, int(*h.arlen) + 1, *h.arid);
            if (*h.rvalid && *h.rready) ddr->r_pop(p);
            if (*h.awvalid && *h.awready) ddr->aw(p, *h.awaddr, int(*h.awlen) + 1, *h.awid);
            if (*h.wvalid && *h.wready)
                ddr->w(p, reinterpret_cast<const uint8_t*>(h.wdata->data()), *h.wstrb, *h.wlast);
            if (*h.bvalid && *h.bready) ddr->b_pop(p);
        }
        if (lite_sample) {
            Vaccel* t = top.get();
            lite_awready = t->s_axil___05Fawready;
            lite_wready = t->s_axil___05Fwready;
            lite_arready = t->s_axil___05Farready;
            lite_bvalid = t->s_axil___05Fbvalid;
            lite_rvalid = t->s_axil___05Frvalid;
            lite_rdata = t->s_axil___05Frdata;
            lite_resp = t->s_axil___05Farvalid || t->s_axil___05Frready ? t->s_axil___05Frresp : t->s_axil___05Fbresp;
        }
        top->clk = 1;
        top->rootp->__Vtrigprevexpr___TOP__clk__0 = 0;  // a rising edge, whether or not clk was seen low
        top->eval();
        ddr->tick();
        cycle++;
    }

    void lite_idle() {
        top->s_axil___05Fawvalid = 0;
        top->s_axil___05Fwvalid = 0;
        top->s_axil___05Fbready = 0;
        top->s_axil___05Farvalid = 0;
        top->s_axil___05Frready = 0;
    }
};

static constexpr uint64_t LITE_TIMEOUT = 10000;  // cycles: a register slave that never answers is a bug

extern "C" {

// Open a board: `mem_bytes` of DDR (zeroed) at physical address `phys_base`, the DDR model's
// read latency override (`read_latency` 0: the model's default) and seed. NULL on failure.
vk_board* vk_open(uint64_t mem_bytes, uint64_t phys_base, int read_latency, uint64_t seed) {
    auto* b = new (std::nothrow) vk_board();
    if (!b) return nullptr;
    b->mem = static_cast<uint8_t*>(std::calloc(mem_bytes ? mem_bytes : 1, 1));
    if (!b->mem) {
        delete b;
        return nullptr;
    }
    b->mem_bytes = mem_bytes;
    b->phys_base = phys_base;
    b->ctx.reset(new VerilatedContext);
    b->ctx->debug(0);
    b->top.reset(new Vaccel(b->ctx.get(), "accel"));
    vkv260::DdrConfig cfg;
    cfg.seed = seed;
    cfg.read_latency = read_latency;
    b->ddr.reset(new vkv260::DdrModel(cfg, b->mem, mem_bytes, phys_base));
    Vaccel* t = b->top.get();
    b->pins[0] = HP_PINS(t, 0);
    b->pins[1] = HP_PINS(t, 1);
    b->pins[2] = HP_PINS(t, 2);
    b->pins[3] = HP_PINS(t, 3);
    b->lite_idle();
    t->rst = 1;
    for (int i = 0; i < 8; i++) b->step();
    t->rst = 0;
    for (int i = 0; i < 2; i++) b->step();
    return b;
}

void vk_close(vk_board* b) {
    if (!b) return;
    b->top->final();
    b->top.reset();
    b->ddr.reset();
    std::free(b->mem);
    delete b;
}

uint8_t* vk_mem(vk_board* b) { return b->mem; }
uint64_t vk_mem_bytes(vk_board* b) { return b->mem_bytes; }
uint64_t vk_phys_base(vk_board* b) { return b->phys_base; }
uint64_t vk_cycle(vk_board* b) { return b->cycle; }
int vk_irq(vk_board* b) { return b->top->irq ? 1 : 0; }

// AXI4-Lite write: 0 on OKAY, the BRESP otherwise, -1 when the slave does not answer.
int vk_reg_write(vk_board* b, uint32_t offset, uint32_t value) {
    Vaccel* t = b->top.get();
    t->s_axil___05Fawaddr = offset;
    t->s_axil___05Fawprot = 0;
    t->s_axil___05Fwdata = value;
    t->s_axil___05Fwstrb = 0xF;
    bool aw = false, w = false;
    for (uint64_t n = 0; n < LITE_TIMEOUT; n++) {
        t->s_axil___05Fawvalid = !aw;
        t->s_axil___05Fwvalid = !w;
        t->s_axil___05Fbready = aw && w;
        b->lite_sample = true;
        b->step();
        b->lite_sample = false;
        if (aw && w && b->lite_bvalid) {
            b->lite_idle();
            return b->lite_resp;
        }
        aw = aw || b->lite_awready;
        w = w || b->lite_wready;
    }
    b->lite_idle();
    return -1;
}

// AXI4-Lite read into *value: 0 on OKAY, the RRESP otherwise, -1 when the slave does not answer.
int vk_reg_read(vk_board* b, uint32_t offset, uint32_t* value) {
    Vaccel* t = b->top.get();
    t->s_axil___05Faraddr = offset;
    t->s_axil___05Farprot = 0;
    bool ar = false;
    for (uint64_t n = 0; n < LITE_TIMEOUT; n++) {
        t->s_axil___05Farvalid = !ar;
        t->s_axil___05Frready = ar;
        b->lite_sample = true;
        b->step();
        b->lite_sample = false;
        if (ar && b->lite_rvalid) {
            *value = b->lite_rdata;
            b->lite_idle();
            return b->lite_resp;
        }
        ar = ar || b->lite_arready;
    }
    b->lite_idle();
    return -1;
}

// Run until the interrupt line is high or `max_cycles` have passed; returns 1 when the interrupt is high.
static double thread_cpu_s() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

int vk_run(vk_board* b, uint64_t max_cycles) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = thread_cpu_s();
    uint64_t start = b->cycle;
    Vaccel* t = b->top.get();
    while (!t->irq && b->cycle - start < max_cycles) b->step();
    b->eval_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    b->eval_cpu_s += thread_cpu_s() - c0;
    b->run_cycles += b->cycle - start;
    return t->irq ? 1 : 0;
}

// Simulation speed so far: cycles run in vk_run, the wall seconds and the CPU seconds they took.
void vk_speed(vk_board* b, uint64_t* cycles, double* seconds, double* cpu_seconds) {
    *cycles = b->run_cycles;
    *seconds = b->eval_s;
    *cpu_seconds = b->eval_cpu_s;
}

// Per-port traffic counters (the order of vkv260::PortStats' fields).
void vk_port_stats(vk_board* b, int port, uint64_t* out) {
    vkv260::PortStats s = b->ddr->stats(port);
    uint64_t v[] = {s.read_beats, s.write_beats, s.read_bursts, s.write_bursts, s.read_bytes,
                    s.write_bytes, s.first_cycle, s.last_cycle, s.errors};
    std::memcpy(out, v, sizeof v);
}
void vk_clear_stats(vk_board* b) { b->ddr->clear_stats(); }

void vk_add_read_error(vk_board* b, uint64_t lo, uint64_t hi) { b->ddr->add_read_error(lo, hi); }
void vk_add_write_error(vk_board* b, uint64_t lo, uint64_t hi) { b->ddr->add_write_error(lo, hi); }
void vk_clear_errors(vk_board* b) { b->ddr->clear_errors(); }
// 1: settle the design before every edge (two evaluations a cycle); 0: one evaluation (see the top).
void vk_set_settle(vk_board* b, int on) { b->settle = on != 0; }
void vk_set_frozen(vk_board* b, int frozen) { b->ddr->set_frozen(frozen != 0); }

}  // extern "C"

// Verilator's --exe build wants a main; the library never calls it.
double sc_time_stamp() { return 0; }
