#!/usr/bin/env python3
"""Measures routing, region and escalation quality of `petition-gateway replay` output
against the labels of a sample file (the format of data/petitions-sample.jsonl, see
data/README.md).

usage: scripts/quality.py SAMPLE.jsonl REPLAY_OUTPUT.jsonl [--half even|odd]
Prints one JSON object; rates are shares of the petitions the replay accepted, per channel
and overall. Rejected lines are counted separately (they are failures too).

--half measures only the petitions whose incident id falls in one half (CRC-32 of the id,
even or odd), so rules can be tuned on one half and checked on the other. The replay still
runs over the whole sample (reports of the other half compete as merge candidates, as
they would live); only the scoring is restricted.

usage: scripts/quality.py SAMPLE.jsonl --orders [ORDER ...]
Replays the sample in each order (`petition-gateway replay --order`; default: reported,
file, reverse, shuffle:1, shuffle:2, shuffle-hours:48) and prints one line per order:
dedupe precision and recall and their difference from the first order, routing and
escalation. Uses target/debug/petition-gateway (build it first), or $PETITION_GATEWAY.

usage: scripts/quality.py SAMPLE.jsonl --holdout DEPARTMENT [DEPARTMENT ...]
The generalization test of the learned router: for each department, a copy of the
configuration whose responsibility list has that department's keywords, channel labels
and synonyms deleted; the sample replayed in reported order without and with `--center`
(the center assigns what the decision got wrong, the model learns it). Prints, per
department, the share of its petitions routed right in the stream's first and second
halves, and the share of all petitions sent to a wrong department.

The routing report of `main` also gives the stream's first and second halves apart (the
replay output's order: what a learned router knew grows along it)."""
import collections
import json
import os
import subprocess
import sys
import tempfile
import zlib


def in_half(incident, half):
    if half is None:
        return True
    parity = zlib.crc32(incident.encode("utf-8")) % 2
    return parity == (0 if half == "even" else 1)


def main(sample_path, replay_path, half=None):
    labels = {}
    channels = {}
    all_labels = {}
    for line in open(sample_path, encoding="utf-8"):
        row = json.loads(line)
        all_labels[row["seq"]] = row["label"]
        if not in_half(row["label"]["incident"], half):
            continue
        labels[row["seq"]] = row["label"]
        channels[row["seq"]] = row["channel"]
    stats = collections.defaultdict(collections.Counter)
    for line in open(replay_path, encoding="utf-8"):
        out = json.loads(line)
        seq = out["seq"]
        label = labels.get(seq)
        if label is None:
            continue
        for key in (channels[seq], "all"):
            s = stats[key]
            s["lines"] += 1
            if "error" in out:
                s["rejected"] += 1
                continue
            s["accepted"] += 1
            want, got = label["department"], out["department"]
            if got == want:
                s["routed_right"] += 1
            elif got == "triage":
                s["to_triage"] += 1
            else:
                s["routed_wrong"] += 1
            # No labeled region: the petition names no place, so the county is right.
            want_region = label["region"] or "371082"
            if out.get("region") == want_region:
                s["region_right"] += 1
            elif want_region != "371082" and out.get("region") == "371082":
                s["region_county_instead"] += 1
            if label["escalate"]:
                s["escalate_labeled"] += 1
                s["escalate_found"] += bool(out.get("escalated"))
            if out.get("escalated"):
                s["escalated"] += 1
                s["escalated_right"] += bool(label["escalate"])
    report = {"half": half or "all"}
    for key, s in sorted(stats.items()):
        acc = s["accepted"] or 1
        report[key] = {
            "lines": s["lines"],
            "rejected": s["rejected"],
            "routing_right": round(s["routed_right"] / acc, 4),
            "routing_triage": round(s["to_triage"] / acc, 4),
            "routing_wrong": round(s["routed_wrong"] / acc, 4),
            "region_right": round(s["region_right"] / acc, 4),
            "region_county_instead_of_street": round(s["region_county_instead"] / acc, 4),
            "region_wrong_street": round((acc - s["region_right"] - s["region_county_instead"]) / acc, 4),
            "escalation_recall": round(s["escalate_found"] / (s["escalate_labeled"] or 1), 4),
            "escalation_precision": round(s["escalated_right"] / (s["escalated"] or 1), 4),
        }
    report["stream"] = stream_halves(all_labels, replay_path)
    report["dedupe"] = dedupe_quality(all_labels, replay_path, half)
    json.dump(report, sys.stdout, ensure_ascii=False, indent=1)
    print()


def routing_shares(rows):
    """Right, wrong and triage shares of (labeled department, decided department) pairs."""
    n = len(rows) or 1
    right = sum(want == got for want, got in rows)
    triage = sum(want != got and got == "triage" for want, got in rows)
    return {"petitions": len(rows), "right": round(right / n, 4),
            "wrong": round((len(rows) - right - triage) / n, 4), "triage": round(triage / n, 4)}


def routing_rows(labels, replay_path):
    """(labeled department, decided department) per accepted line, in the output's order."""
    rows = []
    for line in open(replay_path, encoding="utf-8"):
        out = json.loads(line)
        label = labels.get(out["seq"])
        if label is not None and "error" not in out:
            rows.append((label["department"], out["department"]))
    return rows


def stream_halves(labels, replay_path):
    """Routing in the first and the second half of the replay's output, in its order."""
    rows = routing_rows(labels, replay_path)
    half = len(rows) // 2
    return {"first": routing_shares(rows[:half]), "second": routing_shares(rows[half:])}


def holdout(sample_path, departments):
    """Deletes each department's words from a copy of the list and replays with and without
    the center (see the usage)."""
    import re
    binary, root = binary_and_root()
    labels = {}
    for line in open(sample_path, encoding="utf-8"):
        row = json.loads(line)
        labels[row["seq"]] = row["label"]
    print("%-18s %6s | %-23s | %-23s | %s" % (
        "department", "n", "list alone: 1st / 2nd", "with center: 1st / 2nd", "wrong, all (alone / center)"))
    for department in departments:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "responsibility.toml")
            text = open(os.path.join(root, "config/responsibility.toml"), encoding="utf-8").read()
            blocks = text.split("[[department]]")
            found = False
            for i, block in enumerate(blocks):
                if re.search(r'^code = "%s"$' % re.escape(department), block, re.M):
                    found = True
                    block = re.sub(r"^keywords = .*$", "keywords = []", block, flags=re.M)
                    block = re.sub(r"^channel_labels = .*$", "channel_labels = []", block, flags=re.M)
                    block = re.sub(r"^synonyms = .*\n", "", block, flags=re.M)
                    blocks[i] = block
            if not found:
                sys.exit(f"quality.py: no department {department!r} in the list")
            open(path, "w", encoding="utf-8").write("[[department]]".join(blocks))
            results = []
            for center in (False, True):
                out = os.path.join(tmp, "replay.jsonl")
                cmd = [binary, "replay", "--config", os.path.join(root, "config/gateway.toml"),
                       sample_path, "--output", out, "--order", "reported"]
                if center:
                    cmd.append("--center")
                env = dict(os.environ, GATEWAY__ROUTING__RESPONSIBILITY=path)
                run = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if run.returncode != 0:
                    sys.exit(f"quality.py: replay failed: {run.stderr.strip()}")
                rows = routing_rows(labels, out)
                half = len(rows) // 2
                mine = [[row for row in part if row[0] == department]
                        for part in (rows[:half], rows[half:])]
                results.append((routing_shares(mine[0]), routing_shares(mine[1]),
                                routing_shares(rows)))
            (a1, a2, aall), (c1, c2, call) = results
            print("%-18s %6d | %10.4f / %-10.4f | %10.4f / %-10.4f | %.4f / %.4f" % (
                department, a1["petitions"] + a2["petitions"], a1["right"], a2["right"],
                c1["right"], c2["right"], aall["wrong"], call["wrong"]))


def binary_and_root():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    binary = os.environ.get("PETITION_GATEWAY", os.path.join(root, "target/debug/petition-gateway"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"quality.py: {binary} is missing: run `cargo build` first (or set PETITION_GATEWAY)")
    return binary, root


def dedupe_quality(labels, replay_path, half=None):
    """Pairwise precision and recall: over all pairs of reports, same case vs same incident.
    With a half, a predicted pair counts when either report is in it (a false merge with
    the other half is that half's error too); an incident lies wholly in one half."""
    case_of = {}
    for line in open(replay_path, encoding="utf-8"):
        out = json.loads(line)
        if "error" not in out and out["seq"] in labels:
            case_of[out["seq"]] = out["case_id"]
    def pairs(groups):
        n = 0
        for members in groups.values():
            inside = sum(in_half(labels[s]["incident"], half) for s in members)
            outside = len(members) - inside
            n += inside * (inside - 1) // 2 + inside * outside
        return n
    by_case = collections.defaultdict(list)
    by_incident = collections.defaultdict(list)
    by_both = collections.defaultdict(list)
    for seq, case in case_of.items():
        incident = labels[seq]["incident"]
        by_case[case].append(seq)
        by_incident[incident].append(seq)
        by_both[(case, incident)].append(seq)
    predicted, actual, right = pairs(by_case), pairs(by_incident), pairs(by_both)
    return {
        "predicted_pairs": predicted,
        "labeled_pairs": actual,
        "right_pairs": right,
        "precision": round(right / predicted, 4) if predicted else None,
        "recall": round(right / actual, 4) if actual else None,
        "cases": len(by_case),
        "incidents": len(by_incident),
    }


def compare_orders(sample_path, orders):
    """Replays the sample in each order and prints how far each is from the first."""
    binary, root = binary_and_root()
    config = os.path.join(root, "config/gateway.toml")
    first = None
    labels = {}
    for line in open(sample_path, encoding="utf-8"):
        row = json.loads(line)
        labels[row["seq"]] = row["label"]
    print("%-22s %7s %7s %6s %8s %8s %8s %8s" % (
        "order", "P", "R", "cases", "dP", "dR", "routed", "escal.R"))
    with tempfile.TemporaryDirectory() as tmp:
        for order in orders:
            out = os.path.join(tmp, "replay.jsonl")
            run = subprocess.run([binary, "replay", "--config", config, sample_path,
                                  "--output", out, "--order", order],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"quality.py: replay --order {order} failed: {run.stderr.strip()}")
            d = dedupe_quality(labels, out)
            routed = escal = labeled = 0
            for line in open(out, encoding="utf-8"):
                r = json.loads(line)
                label = labels.get(r["seq"])
                if label is None or "error" in r:
                    continue
                routed += r["department"] == label["department"]
                labeled += bool(label["escalate"])
                escal += bool(label["escalate"]) and bool(r.get("escalated"))
            if first is None:
                first = d
            print("%-22s %7.4f %7.4f %6d %+8.4f %+8.4f %8.4f %8.4f" % (
                order, d["precision"], d["recall"], d["cases"],
                d["precision"] - first["precision"], d["recall"] - first["recall"],
                routed / len(labels), escal / (labeled or 1)))


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 3 and args[1] == "--holdout":
        holdout(args[0], args[2:])
        sys.exit(0)
    if len(args) >= 2 and args[1] == "--orders":
        compare_orders(args[0], args[2:] or
                       ["reported", "file", "reverse", "shuffle:1", "shuffle:2", "shuffle-hours:48"])
        sys.exit(0)
    half = None
    if len(args) == 4 and args[2] == "--half" and args[3] in ("even", "odd"):
        half = args[3]
        args = args[:2]
    if len(args) != 2:
        sys.exit(__doc__)
    main(args[0], args[1], half)
