#!/usr/bin/env python3
"""Reference vectors for the ggml block formats, made with gguf-py (the `gguf` package on PyPI).

What it makes
-------------
Into native/crates/quant/tests/fixtures/quant-vectors/ (or --out DIR):

* dequantize vectors: for every type of TYPES that gguf-py can dequantize, N blocks of random
  bytes in which every f16 scale field (d, dmin, m) is overwritten with a finite random half
  (zeros of both signs, subnormals, ordinary values and values up to 65504 included), so no
  NaN/Inf can come out; then gguf-py's dequantized float32 values. The plain types (F32, F16,
  BF16) get random finite values over their whole exponent range.
* quantize vectors: for every type of TYPES that gguf-py can quantize, a fixed random float32
  input (blocks of varied scale and shape, plus hand-made blocks: all zero, constant, tied
  maximum magnitudes, a single outlier) and gguf-py's block bytes. F16 and BF16 also get
  rounding ties, overflow and subnormal inputs (BF16 also NaN, whose quieting ggml specifies);
  Q8_0 gets a separate case of exact half-way quants (see README.md).
* the type table of gguf-py (name, id, block size, type size, and whether gguf-py can dequantize
  / quantize the type), to check GgmlType's table against.
* manifest.json describing all of the above; README.md in that folder gives the file format.

The Rust test native/crates/quant/tests/reference_vectors.rs reads them.

How to rerun
------------
    python3 -m venv /tmp/gguf-venv
    /tmp/gguf-venv/bin/pip install gguf==0.19.0 numpy
    /tmp/gguf-venv/bin/python scripts/quant-vectors/make_vectors.py          # rewrite fixtures
    /tmp/gguf-venv/bin/python scripts/quant-vectors/make_vectors.py --check  # compare only

Pinned: gguf==0.19.0 (refuses to run with another version unless --any-gguf-version). The
output is deterministic for a given gguf and numpy (numpy.random.Generator(PCG64) with SEED);
the numpy version used is recorded in manifest.json. The output is about 0.3 MB; keep it small.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

PINNED_GGUF = "0.19.0"
SEED = 0x6767_7566  # "gguf"
FORMAT = "mistralrs-quant-vectors/1"

# Types we want vectors for, in ggml id order.
TYPES = [
    "F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",
    "Q5_K", "Q6_K", "Q8_K", "IQ4_NL", "IQ4_XS", "BF16",
]
# Types added later: each takes its own generator (seeded by SEED and its id), so adding one
# leaves every earlier file as it was.
LATER_TYPES = ["MXFP4", "TQ2_0", "TQ1_0"]

# Byte offsets of the f16 scale fields inside one block (ggml's block_* structs).
F16_FIELDS = {
    "Q4_0": [0],          # d, qs[16]
    "Q4_1": [0, 2],       # d, m, qs[16]
    "Q5_0": [0],          # d, qh[4], qs[16]
    "Q5_1": [0, 2],       # d, m, qh[4], qs[16]
    "Q8_0": [0],          # d, qs[32]
    "Q2_K": [80, 82],     # scales[16], qs[64], d, dmin
    "Q3_K": [108],        # hmask[32], qs[64], scales[12], d
    "Q4_K": [0, 2],       # d, dmin, scales[12], qs[128]
    "Q5_K": [0, 2],       # d, dmin, scales[12], qh[32], qs[128]
    "Q6_K": [208],        # ql[128], qh[64], scales[16] (int8), d
    "IQ4_NL": [0],        # d, qs[16]
    "IQ4_XS": [0],        # d, scales_h (u16), scales_l[4], qs[128]
    "MXFP4": [],          # e (E8M0), qs[16]
    "TQ2_0": [64],        # qs[64], d
    "TQ1_0": [52],        # qs[48], qh[4], d
}
# E8M0 exponent bytes: random, kept below 253 so that 12 · 2^(e − 128) stays finite.
E8M0_FIELDS = {"MXFP4": [0]}
PLAIN = {"F32", "F16", "BF16"}

DEQUANT_BLOCKS_SMALL = 64   # blocks of types with 32 elements per block
DEQUANT_BLOCKS_K = 16       # blocks of types with 256 elements per block
PLAIN_ELEMENTS = 2048
QUANT_BLOCKS = 64           # random blocks of 32 elements per quantize case (plus hand-made ones)


def gguf_modules():
    from gguf import quants
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    return quants, GGML_QUANT_SIZES, GGMLQuantizationType


# ----------------------------------------------------------------------------- random values

def random_f16_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Finite halves: ~8% signed zeros, ~8% subnormals, ~14% large (256..65504), rest normal."""
    sign = rng.integers(0, 2, n, dtype=np.uint16) << 15
    mant = rng.integers(0, 1024, n, dtype=np.uint16)
    kind = rng.random(n)
    exp = rng.integers(1, 24, n, dtype=np.uint16)                       # 2^-14 .. 2^8
    exp = np.where(kind < 0.30, rng.integers(23, 31, n, dtype=np.uint16), exp)  # large
    exp = np.where(kind < 0.16, 0, exp)                                 # subnormal
    mant = np.where(kind < 0.08, 0, mant)                               # (signed) zero
    mant = np.where((kind >= 0.08) & (kind < 0.16) & (mant == 0), 1, mant)
    bits = (sign | (exp << 10) | mant).astype(np.uint16)
    assert np.isfinite(bits.view(np.float16)).all()
    return bits


def random_plain_values(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    """Raw bytes of n finite values of a plain type, over the whole exponent range."""
    if name == "F16":
        bits = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
        bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0x83FF, bits).astype(np.uint16)
        bits[:4] = [0x0000, 0x8000, 0x7BFF, 0xFBFF]   # +0, -0, +max, -max
        return bits.view(np.uint8)
    if name == "BF16":
        bits = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
        bits = np.where((bits & 0x7F80) == 0x7F80, bits & 0x807F, bits).astype(np.uint16)
        bits[:6] = [0x0000, 0x8000, 0x7F7F, 0xFF7F, 0x0001, 0x8001]
        return bits.view(np.uint8)
    if name == "F32":
        bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
        bits = np.where((bits & 0x7F800000) == 0x7F800000, bits & 0x807FFFFF, bits).astype(np.uint32)
        bits[:6] = [0x00000000, 0x80000000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x80000001]
        return bits.view(np.uint8)
    raise ValueError(name)


def random_blocks(rng: np.random.Generator, name: str, n_blocks: int, type_size: int) -> np.ndarray:
    blocks = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint16).astype(np.uint8)
    for off in F16_FIELDS[name]:
        assert off + 2 <= type_size
        blocks[:, off:off + 2] = random_f16_bits(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    # A few fixed patterns at the start: every scale +1.0, then every scale 0, then -65504.
    for i, value in enumerate([np.float16(1.0), np.float16(0.0), np.float16(-65504.0)]):
        for off in F16_FIELDS[name]:
            blocks[i, off:off + 2] = np.array([value], dtype=np.float16).view(np.uint8)
    for off in E8M0_FIELDS.get(name, []):
        blocks[:, off] = rng.integers(0, 253, n_blocks, dtype=np.uint16).astype(np.uint8)
        blocks[:4, off] = [127, 0, 1, 252]   # scale 1, the two subnormal ones, the largest kept
    return blocks.reshape(-1)


def quantize_input(rng: np.random.Generator, n_blocks: int, block: int) -> np.ndarray:
    """float32 blocks of varied scale (1e-4 .. 1e3) and shape, then hand-made blocks."""
    out = []
    for i in range(n_blocks):
        scale = np.float32(10.0 ** rng.uniform(-4, 3))
        shape = i % 5
        if shape == 0:
            x = rng.standard_normal(block)
        elif shape == 1:
            x = rng.uniform(-1, 1, block)
        elif shape == 2:                       # all positive (min > 0 matters for Q4_1/Q5_1)
            x = rng.uniform(0.2, 1, block)
        elif shape == 3:                       # all negative
            x = -rng.uniform(0.2, 1, block)
        else:                                  # one outlier
            x = rng.standard_normal(block) * 0.05
            x[rng.integers(0, block)] = rng.choice([-1.0, 1.0]) * 4
        out.append((x * scale).astype(np.float32))
    special = [
        np.zeros(block, np.float32),                          # d = 0, id = 0
        np.full(block, 0.37, np.float32),                     # constant: max == min
        np.full(block, -2.5, np.float32),
        np.where(np.arange(block) == 7, 3.0, 0.0).astype(np.float32),   # single nonzero
    ]
    tie = (rng.standard_normal(block) * 0.5).astype(np.float32)   # |max| reached twice, + first
    tie[3], tie[20] = 5.0, -5.0
    special.append(tie)
    tie2 = tie.copy()                                             # - first
    tie2[3], tie2[20] = -5.0, 5.0
    special.append(tie2)
    return np.concatenate(out + special).astype(np.float32)


def f16_quantize_input(rng: np.random.Generator) -> np.ndarray:
    """Values for F16 conversion: wide random range, round-to-even ties, overflow, subnormals."""
    x = (rng.standard_normal(PLAIN_ELEMENTS) * 10.0 ** rng.uniform(-9, 5, PLAIN_ELEMENTS)).astype(np.float32)
    ties = np.array([
        1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, -(1.0 + 2.0 ** -11), 2049.0, 2051.0,  # halfway
        65504.0, 65519.0, 65520.0, -65520.0, 1e6,        # max, last rounding down, overflow to inf
        2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -26, 6.0e-5, -1e-8,   # subnormals
        0.0, -0.0, np.inf, -np.inf,
    ], dtype=np.float32)
    x[:len(ties)] = ties
    return x


def bf16_quantize_input(rng: np.random.Generator) -> np.ndarray:
    bits = rng.integers(0, 1 << 32, PLAIN_ELEMENTS, dtype=np.uint64).astype(np.uint32)
    bits = np.where((bits & 0x7F800000) == 0x7F800000, bits & 0x807FFFFF, bits).astype(np.uint32)
    special = np.array([
        0x3F808000, 0x3F818000, 0xBF808000, 0x3F808001, 0x3F807FFF,  # ties to even / not ties
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000,                          # round up into inf
        0x00008000, 0x00018000, 0x80000001, 0x00000000, 0x80000000,  # subnormals, zeros
        0x7F800000, 0xFF800000,                                      # +-inf
        0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FBFFFFF, 0xFF80FFFF,  # NaNs (quiet / signalling)
    ], dtype=np.uint32)
    bits[:len(special)] = special
    return bits.view(np.float32)


def q8_0_ties_input() -> np.ndarray:
    """Blocks whose amax is 127, so d = 1 and id = 1 exactly: every x*id is x, and the
    inputs k + 0.5 are exact half-way cases. ggml's reference (roundf) and gguf-py round them
    away from zero."""
    blocks = []
    halves = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 10.5, -10.5, 125.5, -125.5,
                       126.5, -126.5, 63.5, -64.5], dtype=np.float32)
    for sign in (1.0, -1.0):
        b = np.zeros(32, np.float32)
        b[0] = sign * 127.0
        b[1:17] = halves
        b[17:] = np.arange(15, dtype=np.float32) - 7.0    # exact integers, no ties
        blocks.append(b)
        b = b[::-1].copy()
        blocks.append(b)
    return np.concatenate(blocks)


def q8_0_ties(x: np.ndarray) -> int:
    """How many x*id of gguf-py's Q8_0 quantization are exactly half-way between integers."""
    b = x.reshape(-1, 32)
    d = np.abs(b).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = np.abs((b * inv).astype(np.float32))
    return int(((v - np.floor(v)) == 0.5).sum())


# ----------------------------------------------------------------------------- main

def build(out: Path) -> None:
    quants, sizes, QT = gguf_modules()
    rng = np.random.default_rng(SEED)
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []

    def write(name: str, arr: np.ndarray) -> str:
        data = np.ascontiguousarray(arr)
        if data.dtype != np.uint8:
            data = data.astype(data.dtype.newbyteorder("<"), copy=False)
        (out / name).write_bytes(data.tobytes())
        files.append(name)
        return name

    def can_dequantize(qt) -> bool:
        bs, ts = sizes[qt]
        try:
            quants.dequantize(np.zeros(ts, np.uint8), qt)
            return True
        except NotImplementedError:
            return False

    def can_quantize(qt) -> bool:
        bs, ts = sizes[qt]
        try:
            quants.quantize(np.zeros(bs if bs > 1 else 1, np.float32), qt)
            return True
        except NotImplementedError:
            return False

    types = []
    for qt in QT:
        bs, ts = sizes[qt]
        types.append({"name": qt.name, "id": int(qt), "block_size": bs, "type_size": ts,
                      "gguf_py_dequantize": can_dequantize(qt),
                      "gguf_py_quantize": can_quantize(qt)})

    dequant_cases = []

    def dequant_case(name: str, rng: np.random.Generator) -> None:
        qt = QT[name]
        if not can_dequantize(qt):
            return
        bs, ts = sizes[qt]
        if name in PLAIN:
            raw = random_plain_values(rng, name, PLAIN_ELEMENTS)
        else:
            n_blocks = DEQUANT_BLOCKS_SMALL if bs == 32 else DEQUANT_BLOCKS_K
            raw = random_blocks(rng, name, n_blocks, ts)
        assert raw.dtype == np.uint8 and raw.size % ts == 0
        values = np.asarray(quants.dequantize(raw, qt), dtype=np.float32).reshape(-1)
        n_blocks = raw.size // ts
        assert values.size == n_blocks * bs, name
        assert np.isfinite(values).all(), f"{name}: non-finite dequantized value"
        dequant_cases.append({
            "type": name, "n_blocks": n_blocks, "n_elements": int(values.size),
            "blocks_file": write(f"{name}.dequant.blocks.bin", raw),
            "values_file": write(f"{name}.dequant.values.f32", values),
        })

    quant_cases = []

    def quant_case(name: str, rng: np.random.Generator) -> None:
        qt = QT[name]
        if not can_quantize(qt):
            return
        bs, ts = sizes[qt]
        inputs: list[tuple[str, np.ndarray, str]] = []
        if name == "F16":
            inputs.append(("random", f16_quantize_input(rng),
                           "wide random range plus ties, overflow to inf, subnormals; RNE"))
        elif name == "BF16":
            inputs.append(("random", bf16_quantize_input(rng),
                           "random finite plus ties, overflow, subnormals, inf and NaN (quieted)"))
        elif name == "F32":
            inputs.append(("random", random_plain_values(rng, "F32", PLAIN_ELEMENTS).view(np.float32),
                           "identity"))
        else:
            assert bs in (32, 256), name
            inputs.append(("random", quantize_input(rng, QUANT_BLOCKS * 32 // bs, bs),
                           "random blocks of varied scale and shape, plus zero / constant / tied-max / single-outlier blocks"))
            if name == "Q8_0":
                inputs.append(("ties", q8_0_ties_input(),
                               "exact half-way quants (d = 1); rounded half away from zero (ggml roundf)"))
        for case, x, what in inputs:
            x = np.ascontiguousarray(x, dtype=np.float32)
            with np.errstate(over="ignore"):  # F16: inputs past 65504 become inf on purpose
                blocks = np.asarray(quants.quantize(x, qt)).view(np.uint8).reshape(-1)
            assert blocks.size == x.size // bs * ts, name
            ties = q8_0_ties(x) if name == "Q8_0" else 0
            if name == "Q8_0" and case == "random":
                assert ties == 0, "random Q8_0 input hit an exact rounding tie; change the seed"
            quant_cases.append({
                "type": name, "case": case, "description": what,
                "n_blocks": x.size // bs, "n_elements": int(x.size), "half_way_ties": ties,
                "input_file": write(f"{name}.quant-{case}.input.f32", x),
                "blocks_file": write(f"{name}.quant-{case}.blocks.bin", blocks),
            })

    for name in TYPES:
        dequant_case(name, rng)
    for name in TYPES:
        quant_case(name, rng)
    for name in LATER_TYPES:
        later = np.random.default_rng([SEED, int(QT[name])])
        dequant_case(name, later)
        quant_case(name, later)

    manifest = {
        "format": FORMAT,
        "generator": "scripts/quant-vectors/make_vectors.py",
        "gguf_version": importlib.metadata.version("gguf"),
        "numpy_version": np.__version__,
        "seed": SEED,
        "requested_types": TYPES + LATER_TYPES,
        "types": types,
        "dequantize": dequant_cases,
        "quantize": quant_cases,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    files.append("manifest.json")
    total = sum((out / f).stat().st_size for f in files)
    print(f"wrote {len(files)} files, {total} bytes, to {out}")
    print("dequantize:", " ".join(c["type"] for c in dequant_cases))
    print("quantize:  ", " ".join(f'{c["type"]}/{c["case"]}' for c in quant_cases))
    missing = [t for t in TYPES if t not in {c["type"] for c in dequant_cases}]
    print("no gguf-py dequantize for:", " ".join(missing) or "-")


def main() -> int:
    repo = Path(__file__).resolve().parents[2]
    default_out = repo / "native/crates/quant/tests/fixtures/quant-vectors"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=default_out)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with --out")
    ap.add_argument("--any-gguf-version", action="store_true")
    args = ap.parse_args()

    version = importlib.metadata.version("gguf")
    if version != PINNED_GGUF and not args.any_gguf_version:
        print(f"gguf {version} installed, {PINNED_GGUF} pinned (see the docstring)", file=sys.stderr)
        return 2

    if not args.check:
        build(args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        names = sorted(p.name for p in Path(tmp).iterdir())
        ours = sorted(p.name for p in args.out.iterdir() if p.name != "README.md")
        _, mismatch, errors = filecmp.cmpfiles(tmp, args.out, names, shallow=False)
        extra = sorted(set(ours) - set(names))
        if mismatch or errors or extra:
            print(f"differs: {mismatch} missing: {errors} extra: {extra}", file=sys.stderr)
            return 1
        print("fixtures are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
