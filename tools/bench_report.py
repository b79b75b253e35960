#!/usr/bin/env python3
"""Prints every result of `make bench` as ONE table against the targets, grouped by section, and
writes it to target/bench/report.json.

Sources: the criterion results (target/criterion, or $CARGO_TARGET_DIR/criterion) and every
target/bench/*.json but report.json, each `{"source": ..., "rows": [{"section", "name", "value",
"unit", "target", "better", "note"}]}` (coldstart.json, e2e.json, economy.json, baseline.json).
A producer whose file is missing is listed as "not run". The last section puts the Rust
pd-to-sfdc handler next to the Python baseline doing the same work. A row may carry a `price`
({"usd", "unit", "source"}: an AWS price the cost model used) or `prices` (the keys of the prices a
cost row was computed from); both are kept in report.json, and every price is printed with its unit
and source under the table.

    tools/bench_report.py [--root DIR] [--criterion DIR]  # DIR holds target/ (default: this repository)
    tools/bench_report.py --self-test     # checks this script on fake results in a temp dir
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRODUCERS = {  # file stem -> section shown when it did not run
    "coldstart": "Cold start",
    "e2e": "End to end",
    "economy": "Economy",
    "baseline": "Python baseline",
}
TARGETS_US = {  # criterion name fragment -> target in microseconds
    "pd-to-sfdc overhead per event": 100.0,
    "sfdc-to-pd overhead per record": 100.0,
    "plan_record_event_100_rules": 20.0,
    "plan_incident_event_100_rules": 20.0,
}
RUST_HANDLER = "pd-to-sfdc overhead per event"
RATIO_SECTION = "Rust vs Python baseline"


def criterion_rows(criterion):
    rows = []
    for estimates in sorted(criterion.glob("*/new/estimates.json")):
        bench = json.loads((estimates.parent / "benchmark.json").read_text())
        name = bench.get("full_id") or bench.get("title") or estimates.parent.parent.name
        mean = json.loads(estimates.read_text())["mean"]
        us = mean["point_estimate"] / 1000.0
        low, high = (mean["confidence_interval"][b] / 1000.0 for b in ("lower_bound", "upper_bound"))
        target = next((t for fragment, t in TARGETS_US.items() if fragment in name), None)
        section = "Handler overhead (criterion)" if "overhead" in name else "Rules engine (criterion)"
        rows.append({"section": section, "name": name, "value": round(us, 2), "unit": "us", "target": target,
                     "better": "lower", "note": f"mean, 95% CI [{low:.2f}, {high:.2f}] us", "source": "criterion"})
    if not rows:
        rows.append(not_run("Handler overhead (criterion)", "criterion benches", criterion))
    return rows


def not_run(section, name, path):
    return {"section": section, "name": name, "value": None, "unit": "", "target": None, "better": "lower",
            "note": f"not run ({path} missing)", "source": None}


def producer_rows(bench_dir):
    rows = []
    files = {p.stem: p for p in bench_dir.glob("*.json") if p.name != "report.json"}
    for stem in [*PRODUCERS, *sorted(set(files) - set(PRODUCERS))]:
        path = files.get(stem)
        section = PRODUCERS.get(stem, stem)
        if path is None:
            rows.append(not_run(section, f"{stem}.json", f"target/bench/{stem}.json"))
            continue
        try:
            doc = json.loads(path.read_text())
            for row in doc["rows"]:
                rows.append({"section": row["section"], "name": row["name"], "value": row.get("value"),
                             "unit": row.get("unit", ""), "target": row.get("target"),
                             "better": row.get("better", "lower"), "note": row.get("note", ""),
                             "source": doc.get("source", stem),
                             **{k: row[k] for k in ("price", "prices") if k in row}})
        except (ValueError, KeyError, TypeError) as e:
            rows.append({**not_run(section, path.name, path), "note": f"unreadable: {e!r}"})
    return rows


def ratio_row(rows):
    rust = next((r["value"] for r in rows if r["source"] == "criterion" and RUST_HANDLER in r["name"]), None)
    python = next((r["value"] for r in rows if r["source"] == "baseline" and r["name"].endswith("mean")), None)
    name = "pd-to-sfdc per event: Python mean / Rust mean"
    if rust is None or python is None or rust <= 0:
        return {**not_run(RATIO_SECTION, name, "criterion or baseline result"), "unit": "x"}
    return {"section": RATIO_SECTION, "name": name, "value": round(python / rust, 1), "unit": "x", "target": None,
            "better": "higher", "note": f"Python {python:.1f} us vs Rust {rust:.1f} us, same work", "source": "report"}


def verdict(row):
    value, target = row["value"], row["target"]
    if value is None or target is None:
        return ""
    ok = value <= target if row["better"] == "lower" else value >= target
    return "ok" if ok else "MISSED"


def number(value):
    if value is None:
        return "not run"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.6g}"  # prices per unit, fractions of a cent
    if abs(value) < 1:
        return f"{value:.3g}"  # 0.625 USD per 1M WRU, not 0.62
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def price_lines(rows):
    """One line per AWS price a row carries: value, unit and source."""
    return [f"  {r['name']}: {r['price']['usd']:g} {r['price']['unit']} -- {r['price']['source']}"
            for r in rows if isinstance(r.get("price"), dict)]


def report(root, criterion, out=sys.stdout):
    """Merges `criterion` and `root`/target/bench into one table; returns its rows."""
    bench_dir = root / "target" / "bench"
    rows = criterion_rows(criterion) + producer_rows(bench_dir)
    rows.append(ratio_row(rows))
    for row in rows:
        row["verdict"] = verdict(row)
    sections = list(dict.fromkeys(r["section"] for r in rows))
    width = max(len(r["name"]) for r in rows)
    print(f"{'':2}{'benchmark':<{width}}  {'value':>10} {'unit':<4}  {'target':>8}  {'verdict':<7}  note", file=out)
    for section in sections:
        print(f"{section}", file=out)
        for r in (r for r in rows if r["section"] == section):
            target = "-" if r["target"] is None else number(r["target"])
            print(f"  {r['name']:<{width}}  {number(r['value']):>10} {r['unit']:<4}  {target:>8}  {r['verdict']:<7}  "
                  f"{r['note']}", file=out)
    prices = price_lines(rows)
    if prices:
        print("\nPrices used by the cost rows (USD, us-east-1):", file=out)
        for line in prices:
            print(line, file=out)
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / "report.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"\nwritten to {bench_dir / 'report.json'}", file=out)
    return rows


def self_test():
    """Fake criterion results and producer files (two missing, one unreadable) in a temp dir."""
    import io

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for slug, name, ns in (("pd", RUST_HANDLER, 50_000.0), ("plan", "plan_incident_event_100_rules", 27_300.0)):
            d = root / "target" / "criterion" / slug / "new"
            d.mkdir(parents=True)
            (d / "benchmark.json").write_text(json.dumps({"full_id": name}))
            ci = {"lower_bound": ns * 0.9, "upper_bound": ns * 1.1}
            (d / "estimates.json").write_text(json.dumps({"mean": {"point_estimate": ns, "confidence_interval": ci}}))
        bench = root / "target" / "bench"
        bench.mkdir(parents=True)
        row = {"section": "Cold start", "name": "pd-to-sfdc: start to first invocation", "value": 23.4, "unit": "ms",
               "target": 50, "better": "lower", "note": "fake"}
        (bench / "coldstart.json").write_text(json.dumps({"source": "coldstart", "rows": [
            row, {**row, "name": "throughput", "value": 10, "unit": "ev/s", "target": 100, "better": "higher"}]}))
        (bench / "baseline.json").write_text(json.dumps({"source": "baseline", "rows": [
            {"section": "Python baseline", "name": "pd-to-sfdc per event, Python handler: mean", "value": 600.0,
             "unit": "us", "target": None, "better": "lower", "note": "fake"}]}))
        (bench / "economy.json").write_text("{not json")
        (bench / "report.json").write_text("{}")  # a previous report is not an input
        text = io.StringIO()
        rows = report(root, root / "target" / "criterion", out=text)
        by_name = {r["name"]: r for r in rows}
        checks = [
            (by_name[RUST_HANDLER]["verdict"], "ok"),
            (by_name["plan_incident_event_100_rules"]["verdict"], "MISSED"),
            (by_name["pd-to-sfdc: start to first invocation"]["verdict"], "ok"),
            (by_name["throughput"]["verdict"], "MISSED"),
            (by_name["pd-to-sfdc per event, Python handler: mean"]["verdict"], ""),
            (by_name["e2e.json"]["note"].startswith("not run"), True),
            (by_name["economy.json"]["note"].startswith("unreadable"), True),
            (by_name["pd-to-sfdc per event: Python mean / Rust mean"]["value"], 12.0),
            ([r["section"] for r in rows][-1], RATIO_SECTION),
            (json.loads((bench / "report.json").read_text())["rows"], rows),
            ("not run" in text.getvalue() and "MISSED" in text.getvalue(), True),
        ]
        failed = [(i, got, want) for i, (got, want) in enumerate(checks) if got != want]
        if failed:
            print(text.getvalue())
            sys.exit(f"self-test failed (check index, got, wanted): {failed}")
        (bench / "baseline.json").unlink()
        ratio = report(root, root / "target" / "criterion", out=io.StringIO())[-1]
        if ratio["value"] is not None or "not run" not in ratio["note"]:
            sys.exit(f"self-test failed: ratio without a baseline: {ratio}")
        price = {"usd": 0.0000133334, "unit": "USD per GB-second", "source": "https://example.com/lambda"}
        (bench / "economy.json").write_text(json.dumps({"source": "economy", "rows": [
            {"section": "Cost per million events", "name": "retry: total", "value": 1.23, "unit": "USD",
             "target": None, "better": "lower", "note": "fake", "prices": ["lambda_arm64_gb_s"]},
            {"section": "AWS prices used", "name": "lambda_arm64_gb_s", "value": 0.0000133334, "unit": "USD",
             "target": None, "better": "lower", "note": "fake", "price": price}]}))
        text = io.StringIO()
        by_name = {r["name"]: r for r in report(root, root / "target" / "criterion", out=text)}
        printed = text.getvalue()
        checks = [
            (by_name["lambda_arm64_gb_s"]["price"], price),
            (by_name["retry: total"]["prices"], ["lambda_arm64_gb_s"]),
            ("1.33334e-05" in printed and "https://example.com/lambda" in printed, True),
            ("USD per GB-second" in printed, True),
        ]
        failed = [(i, got, want) for i, (got, want) in enumerate(checks) if got != want]
        if failed:
            print(printed)
            sys.exit(f"self-test failed (price check index, got, wanted): {failed}")
    print("bench_report self-test ok")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=pathlib.Path, default=ROOT, help="the directory that holds target/")
    parser.add_argument("--criterion", type=pathlib.Path,
                        help="criterion results (default: $CARGO_TARGET_DIR/criterion, else ROOT/target/criterion)")
    parser.add_argument("--self-test", action="store_true", help="check this script on fake results and exit")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    cargo_target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or args.root / "target")
    report(args.root.resolve(), args.criterion or cargo_target / "criterion")


if __name__ == "__main__":
    main()
