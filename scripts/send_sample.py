#!/usr/bin/env python3
"""Posts work orders from the labeled sample to a running gateway, the way the 12345 hotline
platform does, and prints each answer.

usage: scripts/send_sample.py [--url URL] [--token TOKEN] [--count N] [--sample FILE]"""
import argparse
import json
import os
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080/intake/hotline")
    ap.add_argument("--token", default=os.environ.get("GATEWAY__CONNECTORS__HOTLINE__TOKEN", "dev-hotline-token"))
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--sample", default=os.path.join(HERE, "../../shared/data/petitions-sample.jsonl"))
    args = ap.parse_args()
    sent = 0
    with open(args.sample, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["channel"] != "hotline":
                continue
            body = json.dumps(row["payload"], ensure_ascii=False).encode()
            req = urllib.request.Request(args.url, data=body, method="POST", headers={
                "content-type": "application/json", "authorization": f"Bearer {args.token}"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                answer = json.loads(resp.read())
            print(f"{row['payload']['gdbh']}  → {json.dumps(answer, ensure_ascii=False)}"
                  f"   (labeled: {row['label']['department']})")
            sent += 1
            if sent >= args.count:
                break
    # One malformed order, to show the error envelope and the quarantine.
    bad = json.dumps({"gdbh": "RC-DEMO-BAD", "ldsj": "yesterday", "sqlx": "吐槽"}).encode()
    req = urllib.request.Request(args.url, data=bad, method="POST", headers={
        "content-type": "application/json", "authorization": f"Bearer {args.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        print(f"RC-DEMO-BAD      → {resp.read().decode()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
