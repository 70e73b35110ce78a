"""``ternfpga inspect MODEL.tern``: what an image holds, how big each part is, and whether it is intact."""
from __future__ import annotations

import argparse
import json

from ternfpga.quant.errors import TernError

GROUPS = ("embedding", "body trits", "body scales/norms/biases", "head ternary", "head int8", "rope", "tokenizer", "other")


def register(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="show a .tern model image's contents and verify its checksums",
                              description="Print the config, trit layout, quantization options and section sizes "
                                          "of a model image, and check every section's CRC-32.")
    p.add_argument("image", metavar="MODEL.tern", help="model image written by `ternfpga quantize`")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)
    return p


def group_of(name: str) -> str:
    if name.startswith("embed."):
        return "embedding"
    if name.startswith("layers."):
        return "body trits" if name.endswith(".trits") else "body scales/norms/biases"
    if name.startswith("final_norm."):
        return "body scales/norms/biases"
    if name in ("head.trits", "head.scale"):
        return "head ternary"
    if name.startswith("head.int8"):
        return "head int8"
    if name.startswith("rope."):
        return "rope"
    if name == "tokenizer":
        return "tokenizer"
    return "other"


def summarize(img) -> dict:
    """The inspect report of an opened image (CRCs checked here; a bad one raises TernError)."""
    crc = img.verify()
    bad = [n for n, ok in crc.items() if not ok]
    if bad:
        raise TernError(f"section '{bad[0]}' of model image '{img.path}' fails its CRC check"
                        + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""),
                        "the file is corrupt: re-create it with `ternfpga quantize` or copy it again")
    groups = {g: {"sections": 0, "bytes": 0, "shared": [], "crc_ok": True} for g in GROUPS}
    weights = trit_bytes = 0
    for name in img.names():
        t = img.info(name)
        g = groups[group_of(name)]
        g["sections"] += 1
        if "alias_of" in t:  # same bytes as another section: count them once
            g["shared"].append(f"{name}={t['alias_of']}")
            continue
        g["bytes"] += t["nbytes"]
        if t["dtype"] == "trits":
            weights += t["shape"][0] * t["shape"][1]
            trit_bytes += t["nbytes"]
    groups = {k: v for k, v in groups.items() if v["sections"]}
    quant = {k: v for k, v in img.header.get("quant", {}).items() if k != "stats"}
    stats = img.header.get("quant", {}).get("stats", {})
    return {
        "path": str(img.path),
        "file_bytes": img.path.stat().st_size,
        "version": img.header.get("version"),
        "config": img.config.to_dict(),
        "numerics": img.header.get("numerics", {}),
        "layout": img.layout.to_dict(),
        "quant": quant,
        "groups": groups,
        "ternary_weights": weights,
        "packed_trit_bytes": trit_bytes,
        "bits_per_weight": 8 * trit_bytes / weights if weights else 0.0,
        "head_rel_err": stats.get("head", {}).get("rel_err"),
        "crc_ok": True,
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:9.2f} MiB"


def format_summary(s: dict) -> str:
    c, lay, q = s["config"], s["layout"], s["quant"]
    head = "tied head" if c["tied"] else "untied head"
    extras = [x for x, on in (("q/k/v bias", c["qkv_bias"]), ("sub-norms", c["sub_norms"])) if on]
    tpl = 5 * lay["beat_bytes"] // lay["lanes"]
    lines = [
        f"image     {s['path']} ({s['file_bytes'] / 2**20:.2f} MiB, format version {s['version']})",
        f"model     {c['architecture']} ({c['family']}): {c['layers']} layers, hidden {c['hidden']}, ffn {c['ffn']}, "
        f"heads {c['heads']}/{c['kv_heads']} x {c['head_dim']}, vocab {c['vocab']}, {head}, {c['act']}"
        + (", " + ", ".join(extras) if extras else ""),
        "numerics  " + ", ".join(f"{k} {v}" for k, v in s["numerics"].items()),
        f"layout    {lay['beat_bytes']}-byte beats, {lay['ports']} ports, {lay['lanes']} lanes ({tpl} trits per lane per beat)",
        "quant     " + ", ".join(f"{k} {v}" for k, v in s["quant"].items()),
        "",
        f"{'section group':<26} {'count':>5} {'size':>13}  crc",
    ]
    for name, g in s["groups"].items():
        note = f"  (shares {', '.join(g['shared'])})" if g["shared"] else ""
        lines.append(f"{name:<26} {g['sections']:>5} {_mib(g['bytes'])}  {'ok' if g['crc_ok'] else 'BAD'}{note}")
    lines.append("")
    lines.append(f"{s['ternary_weights']:,} ternary weights in {s['packed_trit_bytes'] / 2**20:.2f} MiB: "
                 f"{s['bits_per_weight']:.3f} bits/weight"
                 + (f"; ternary head rel err {s['head_rel_err']:.4f}" if s["head_rel_err"] is not None else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ternfpga.quant.image import ModelImage

    img = ModelImage.open(args.image, verify=False)  # summarize() verifies, naming the bad section
    s = summarize(img)
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0
