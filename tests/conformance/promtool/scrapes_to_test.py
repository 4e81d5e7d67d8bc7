"""Turns real scrapes of a cluster into a `promtool test rules` file.

Usage: scrapes_to_test.py RULES SCRAPE_DIR ROUNDS FAULT_ROUND SURVIVOR INSTANCE...

SCRAPE_DIR holds one file per round and member, `<round>.<instance>.prom` (the member's
/metrics text; absent or empty when the scrape failed). Round k becomes the sample at
minute k of promtool's virtual time (interval 1m), with the labels Prometheus would add
(job="etcd", instance=...) and `up` 1 or 0; the first failed scrape of a member is a
staleness marker, as Prometheus records it. FAULT_ROUND is the first round after the fault
(the other members stopped), SURVIVOR the member left. The expectations are the fault's,
not read from the data: before it no alert; at the last round etcdNoLeader fires for the
survivor alone and etcdInsufficientMembers for the cluster, and etcdHighNumberOfLeaderChanges
stays quiet.
"""

import json
import os
import sys

FAMILIES = [
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_failed_total",
    "etcd_server_proposals_pending",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_server_quota_backend_bytes",
]


def parse(path):
    """The unlabelled samples of FAMILIES in one scrape, or None if it failed."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    if not text.strip():
        return None
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[0] in FAMILIES:
            out[parts[0]] = parts[1]
    return out


def main():
    rules, scrape_dir, rounds, fault, survivor = sys.argv[1:6]
    instances = sys.argv[6:]
    rounds, fault = int(rounds), int(fault)
    series = []
    for inst in instances:
        scrapes = [parse(os.path.join(scrape_dir, f"{k}.{inst}.prom")) for k in range(rounds)]
        labels = f'job="etcd",instance="{inst}"'
        up = ["1" if s is not None else "0" for s in scrapes]
        series.append({"series": f"up{{{labels}}}", "values": " ".join(up)})
        for fam in FAMILIES:
            values, was_up = [], False
            for s in scrapes:
                if s is not None and fam in s:
                    values.append(s[fam])
                    was_up = True
                elif was_up:
                    values.append("stale")
                    was_up = False
                else:
                    values.append("_")
            if any(v not in ("_", "stale") for v in values):
                series.append({"series": f"{fam}{{{labels}}}", "values": " ".join(values)})
    before, last = f"{fault - 1}m", f"{rounds - 1}m"
    crit = {"severity": "critical"}
    tests = [
        {"eval_time": before, "alertname": "etcdNoLeader", "exp_alerts": []},
        {"eval_time": before, "alertname": "etcdInsufficientMembers", "exp_alerts": []},
        {
            "eval_time": last,
            "alertname": "etcdNoLeader",
            "exp_alerts": [{"exp_labels": dict(crit, job="etcd", instance=survivor)}],
        },
        {
            "eval_time": last,
            "alertname": "etcdInsufficientMembers",
            "exp_alerts": [{"exp_labels": dict(crit, job="etcd")}],
        },
        {"eval_time": last, "alertname": "etcdHighNumberOfLeaderChanges", "exp_alerts": []},
    ]
    doc = {
        "rule_files": [os.path.abspath(rules)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}],
    }
    # JSON is YAML: promtool reads it as is.
    json.dump(doc, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
