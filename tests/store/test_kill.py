"""A shard writer killed with SIGKILL mid-write leaves only whole shards, and resumes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest

from mmre_cli.store import ArtifactWriter, ShardWriter, read_table, table_schema, validate
from mmre_cli.store.manifest import list_tmp_files

from .conftest import feats

ROWS, PER_SHARD, CHUNK = 3000, 50, 20

# The child writes ROWS feature rows through an ArtifactWriter (resuming if asked), each shard
# written slowly (a sleep per write() call pyarrow makes to the temp file), and prints a line
# after every committed shard so the parent knows when to kill it.
CHILD = textwrap.dedent(
    f"""
    import io, sys, time
    from mmre_cli.store import ArtifactWriter
    from mmre_cli.store.shard_writer import ShardWriter
    from tests.store.conftest import feats

    class SlowFile(io.FileIO):
        def write(self, b):
            time.sleep(0.002)
            return super().write(b)

    ShardWriter._open_tmp = lambda self, path: SlowFile(path, "w")
    commit = ShardWriter._write_shard
    def loud(self, table):
        info = commit(self, table)
        print("shard", info.file, flush=True)
        return info
    ShardWriter._write_shard = loud

    out, resume = sys.argv[1], sys.argv[2] == "1"
    with ArtifactWriter(out, stage="features", encoder="enc", dim=8, params_hash="h",
                        max_rows_per_shard={PER_SHARD}, resume=resume) as art:
        done = art.rows_done("features")
        print("start", done, flush=True)
        for a in range(done, {ROWS}, {CHUNK}):
            art.write("features", feats(a, min(a + {CHUNK}, {ROWS})))
    print("finished", flush=True)
    """
)


def run_and_kill(out, resume: bool, after_shards: int, delay: float) -> tuple[int, bool]:
    """Run the child; SIGKILL it ``delay`` s after its ``after_shards``-th new shard."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), "1" if resume else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env=env,
    )
    start, seen = None, 0
    try:
        for line in proc.stdout:
            if line.startswith("start"):
                start = int(line.split()[1])
            elif line.startswith("shard"):
                seen += 1
                if seen >= after_shards:
                    time.sleep(delay)
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            elif line.startswith("finished"):
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr.read())
    assert start is not None
    return start, any(list_tmp_files(out))


def assert_only_whole_shards(out) -> int:
    """Every final-named shard reads whole with the rows it should hold; returns their count."""
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert names == [f"features-{k:05d}.parquet" for k in range(len(names))]
    for k, name in enumerate(names):
        t = pq.read_table(out / name)
        assert t.num_rows == PER_SHARD
        assert t.column("sample_id").to_pylist() == [f"s{i:06d}" for i in range(k * PER_SHARD, (k + 1) * PER_SHARD)]
        assert t.equals(feats(k * PER_SHARD, (k + 1) * PER_SHARD).replace_schema_metadata(t.schema.metadata))
    # a temp file is never a readable final shard, and readers don't see it
    for tmp in list_tmp_files(out):
        assert not tmp.name.endswith(".parquet")
    assert not (out / "manifest.json").exists()
    return len(names)


def test_sigkill_mid_write_then_resume(tmp_path):
    ref = tmp_path / "ref"
    with ArtifactWriter(
        ref, stage="features", encoder="enc", dim=8, params_hash="h", max_rows_per_shard=PER_SHARD
    ) as art:
        art.write("features", feats(0, ROWS))

    out = tmp_path / "out"
    start, tmp_left_1 = run_and_kill(out, resume=False, after_shards=3, delay=0.01)
    assert start == 0
    n1 = assert_only_whole_shards(out)
    assert 3 <= n1 < ROWS // PER_SHARD
    problems = validate(out)
    assert any("no manifest.json" in p for p in problems)

    # kill the resumed run as well; it started where the first one stopped
    start, tmp_left_2 = run_and_kill(out, resume=True, after_shards=2, delay=0.02)
    assert start == n1 * PER_SHARD
    n2 = assert_only_whole_shards(out)
    assert n2 >= n1 + 2
    # the slow temp-file writes take nearly all the time, so a kill lands mid-write
    assert tmp_left_1 or tmp_left_2

    # a fresh resuming writer removes the temp file and continues from the last whole shard
    schema = table_schema("features", dim=8, stage="features", encoder="enc", params_hash="h")
    assert [s.num_rows for s in ShardWriter.completed_shards(out, "features", schema)] == [PER_SHARD] * n2
    with ArtifactWriter(
        out, stage="features", encoder="enc", dim=8, params_hash="h", max_rows_per_shard=PER_SHARD, resume=True
    ) as art:
        done = art.rows_done("features")
        assert done == n2 * PER_SHARD
        assert not list_tmp_files(out)
        for a in range(done, ROWS, CHUNK):
            art.write("features", feats(a, min(a + CHUNK, ROWS)))

    assert validate(out) == []
    assert read_table(out, "features").equals(read_table(ref, "features"))

    def digest(d):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}

    assert digest(out) == digest(ref)


def test_non_resuming_writer_starts_over(tmp_path):
    out = tmp_path / "out"
    run_and_kill(out, resume=False, after_shards=2, delay=0.0)
    with ArtifactWriter(
        out, stage="features", encoder="enc", dim=8, params_hash="h", max_rows_per_shard=PER_SHARD
    ) as art:
        assert art.rows_done("features") == 0
        assert not list_tmp_files(out) and not list(out.glob("*.parquet"))
        art.write("features", feats(0, 120))
    assert validate(out) == []
    assert read_table(out, "features").num_rows == 120


@pytest.mark.parametrize("bad", [b"", b"PAR1", b"PAR1" + b"\0" * 100])
def test_half_written_tmp_is_ignored_by_resume(tmp_path, bad):
    out = tmp_path / "out"
    with ArtifactWriter(
        out, stage="features", encoder="enc", dim=8, params_hash="h", max_rows_per_shard=PER_SHARD
    ) as art:
        art.write("features", feats(0, 2 * PER_SHARD))
    (out / "manifest.json").unlink()
    (out / ".features-00002.parquet.tmp").write_bytes(bad)
    with ArtifactWriter(
        out, stage="features", encoder="enc", dim=8, params_hash="h", max_rows_per_shard=PER_SHARD, resume=True
    ) as art:
        assert art.rows_done("features") == 2 * PER_SHARD
        art.write("features", feats(2 * PER_SHARD, 3 * PER_SHARD))
    assert validate(out) == []
