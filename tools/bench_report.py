#!/usr/bin/env python3
"""Prints the criterion results of `make bench` as one table against the targets, and writes it as
JSON to target/bench/report.json."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"
TARGETS_US = {  # name fragment -> target in microseconds
    "pd-to-sfdc overhead per event": 100.0,
    "sfdc-to-pd overhead per record": 100.0,
    "plan_record_event_100_rules": 20.0,
    "plan_incident_event_100_rules": 20.0,
}


def main():
    rows = []
    for estimates in sorted(CRITERION.glob("*/new/estimates.json")):
        bench = json.loads((estimates.parent / "benchmark.json").read_text())
        name = bench.get("full_id") or bench.get("title") or estimates.parent.parent.name
        point = json.loads(estimates.read_text())["mean"]
        mean_us = point["point_estimate"] / 1000.0
        low = point["confidence_interval"]["lower_bound"] / 1000.0
        high = point["confidence_interval"]["upper_bound"] / 1000.0
        target = next((t for fragment, t in TARGETS_US.items() if fragment in name), None)
        rows.append({"bench": name, "mean_us": round(mean_us, 2), "ci95_us": [round(low, 2), round(high, 2)],
                     "target_us": target, "meets_target": None if target is None else mean_us <= target})
    if not rows:
        raise SystemExit("no criterion results under target/criterion: run `cargo bench -p pd-sfdc-shared` first")
    width = max(len(r["bench"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'mean':>10}  {'95% CI':>21}  {'target':>8}  verdict")
    for r in rows:
        target = f"{r['target_us']:.0f} us" if r["target_us"] else "-"
        verdict = {True: "ok", False: "MISSED", None: ""}[r["meets_target"]]
        print(f"{r['bench']:<{width}}  {r['mean_us']:>7.2f} us  [{r['ci95_us'][0]:>7.2f}, {r['ci95_us'][1]:>7.2f}] us  {target:>8}  {verdict}")
    out = ROOT / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"benchmarks": rows}, indent=2) + "\n")
    print(f"\nwritten to {out / 'report.json'}")


if __name__ == "__main__":
    main()
