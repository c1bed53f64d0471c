"""Two shard processes writing one set at the same time lose none of each other's parts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mixsd.targets.reader import read_manifest
from mixsd.targets.validate import validate
from mixsd.targets.writer import existing_keys

WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from targets_rows import PROVENANCE, make_rows
from mixsd.targets.writer import TargetSetWriter

root, shard, go = sys.argv[1:4]
while not Path(go).exists():
    time.sleep(0.005)
with TargetSetWriter(root, PROVENANCE, shard=f"{shard}-of-2", rows_per_part=3) as w:
    for k in range(20):
        w.write(make_rows(3, lam=(0.3, 1.0)[k % 2], start=1000 * int(shard) + 3 * k))
        w.add_stats({"waves": k + 1})
"""


def test_two_processes_write_one_set_concurrently(tmp_path):
    root, go = tmp_path / "set", tmp_path / "go"
    here = str(Path(__file__).parent)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(i), str(go), here])
        for i in (0, 1)
    ]
    go.touch()  # both start their 20 parts at once, racing for the manifest
    # a bound for a hang only (both finish in seconds; a busy machine may take minutes)
    assert [p.wait(timeout=900) for p in procs] == [0, 0]
    manifest = read_manifest(root)
    assert len(manifest["parts"]) == 40 and manifest["rows"] == 120
    assert {p["shard"] for p in manifest["parts"]} == {"0-of-2", "1-of-2"}
    assert manifest["stats"] == {"0-of-2": {"waves": 20}, "1-of-2": {"waves": 20}}
    assert validate(root) == ([], 120)
    assert len(existing_keys(root)) == 120
