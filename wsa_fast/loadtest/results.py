"""A run's result: counts, the latency histogram (HDR, exact to merge), the timeline; merging, summaries and SLOs.

A result is a plain dict, the same in memory and in ``--json``. Results of processes or
machines that ran at the same time merge exactly: counts add up, histograms add bucket by
bucket (``hdrhistogram``), timelines add tick by tick.
"""

from __future__ import annotations

import json
import re

from hdrh.histogram import HdrHistogram

from .._loadgen import HDR_DIGITS, HDR_HIGHEST_NS, HDR_LOWEST_NS, Histogram, value_at_index

FORMAT = "wsa-fast-bench/1"
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
COUNTS = ("sent", "answered", "failed", "lost", "duplicated", "unknown", "garbled", "skipped", "disconnects")
# Counts that mean the deployment did not do its job: any of them fails the run (exit 1).
FAILING = ("failed", "lost", "duplicated", "unknown", "garbled", "disconnects")
SLO = re.compile(r"^(p\d+(?:\.\d+)?|max)=(\d+(?:\.\d+)?)(ns|us|µs|ms|s)$")
UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


class ResultError(ValueError):
    """A result file that cannot be read or merged (a usage error)."""


def new_hdr() -> HdrHistogram:
    return HdrHistogram(HDR_LOWEST_NS, HDR_HIGHEST_NS, HDR_DIGITS)


def to_hdr(histogram: Histogram) -> HdrHistogram:
    """The compiled histogram as an HdrHistogram: every count lands in the bucket it was counted in."""
    hdr = new_hdr()
    for index, count in histogram.sparse():
        hdr.record_value(value_at_index(index), count)
    return hdr


def encode_hdr(hdr: HdrHistogram) -> str:
    """The standard HdrHistogram encoding (compressed, base64): other HDR tools read it too."""
    return hdr.encode().decode("ascii")


def decode_hdr(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


def percentiles_ns(hdr: HdrHistogram) -> dict[str, int]:
    if hdr.get_total_count() == 0:
        return {}
    out = {f"p{q:g}": hdr.get_value_at_percentile(q) for q in PERCENTILES}
    out["max"] = hdr.get_max_value()
    return out


def merge(results: list[dict]) -> dict:
    """Results of loads that ran at the same time (processes, machines) as one result."""
    if not results:
        raise ResultError("nothing to merge")
    for r in results:
        if r.get("format") != FORMAT:
            raise ResultError(f"not a wsa-fast bench result (format {r.get('format')!r}, expected {FORMAT!r})")
    first = results[0]
    out = {
        "format": FORMAT,
        "scenario": first["scenario"],
        "settings": dict(first["settings"]),
        "parts": sum(r.get("parts", 1) for r in results),
    }
    out["urls"] = sorted({u for r in results for u in r.get("urls", [])})
    out["counts"] = {k: sum(r["counts"].get(k, 0) for r in results) for k in COUNTS}
    fails: dict[str, int] = {}
    for r in results:
        for code, n in r["fails"].items():
            fails[code] = fails.get(code, 0) + n
    out["fails"] = dict(sorted(fails.items()))
    hdr = new_hdr()
    for r in results:
        hdr.add(decode_hdr(r["histogram"]))
    out["histogram"] = encode_hdr(hdr)
    # They ran side by side: the window is the longest one, the work done in it adds up.
    m = [r["measured"] for r in results]
    out["measured"] = {
        "seconds": max(x["seconds"] for x in m),
        "sent": sum(x["sent"] for x in m),
        "answered": sum(x["answered"] for x in m),
        "generator_cpu_s": sum(x["generator_cpu_s"] for x in m),
    }
    out["setup_s"] = max(r.get("setup_s") or 0.0 for r in results)
    out["bad_samples"] = [s for r in results for s in r.get("bad_samples", [])][:3]
    out["interrupted"] = any(r.get("interrupted") for r in results)
    out["timeline"] = merge_timelines([r["timeline"] for r in results])
    return out


def merge_timelines(timelines: list[list[dict]]) -> list[dict]:
    """Tick i of every timeline added up (cumulative counts add; interval histograms add)."""
    merged = []
    for i in range(max((len(t) for t in timelines), default=0)):
        ticks = [t[min(i, len(t) - 1)] for t in timelines if t]
        hdr = new_hdr()
        for t in timelines:
            if i < len(t):
                hdr.add(decode_hdr(t[i]["hist"]))
        merged.append(
            {
                "t": max(x["t"] for x in ticks),
                **{k: sum(x[k] for x in ticks) for k in ("sent", "answered", "errors", "connected")},
                "hist": encode_hdr(hdr),
            }
        )
    return merged


def summary(result: dict) -> dict:
    """What the table shows: throughput, latency percentiles, generator CPU per message."""
    m = result["measured"]
    hdr = decode_hdr(result["histogram"])
    return {
        "throughput": m["answered"] / m["seconds"] if m["seconds"] > 0 else 0.0,
        "latency_ns": percentiles_ns(hdr),
        "generator_us_per_msg": m["generator_cpu_s"] / m["answered"] * 1e6 if m["answered"] else None,
        "generator_util": m["generator_cpu_s"] / m["seconds"] if m["seconds"] > 0 else None,
    }


def parse_slo(text: str) -> tuple[str, int]:
    """``p99=5ms`` -> ("p99", 5000000); ValueError if it is not of that shape."""
    match = SLO.match(text.strip())
    if not match:
        raise ValueError(f"--slo {text!r}: expected pNN=TIME or max=TIME, TIME like 800us, 5ms, 1.5s")
    name, value, unit = match.groups()
    if name != "max" and not 0 < float(name[1:]) <= 100:
        raise ValueError(f"--slo {text!r}: the percentile must be above 0 and at most 100")
    return name, int(float(value) * UNIT_NS[unit])


def check_slos(result: dict, slos: list[tuple[str, int]]) -> list[str]:
    """The SLOs missed, each as a sentence."""
    hdr = decode_hdr(result["histogram"])
    missed = []
    for name, limit in slos:
        if hdr.get_total_count() == 0:
            missed.append(f"{name} <= {fmt_ns(limit)}: no latency was measured")
            continue
        value = hdr.get_max_value() if name == "max" else hdr.get_value_at_percentile(float(name[1:]))
        if value > limit:
            missed.append(f"{name} <= {fmt_ns(limit)} missed: {fmt_ns(value)}")
    return missed


def problems(result: dict) -> list[str]:
    """Why the run fails, apart from SLOs: anything lost, duplicated, failed, garbled; or nothing answered."""
    c = result["counts"]
    out = [f"{k} {c[k]:,}" for k in FAILING if c.get(k)]
    if not c.get("answered"):
        out.append("nothing was answered")
    return out


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.0f} µs" if ns >= 1e5 else f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError) as error:
        raise ResultError(f"cannot read {path}: {error}") from None
    if not isinstance(result, dict) or result.get("format") != FORMAT:
        raise ResultError(f"{path} is not a wsa-fast bench result (--json output)")
    return result


def dump(result: dict, path: str) -> None:
    text = json.dumps(result, indent=1)
    if path == "-":
        print(text)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
