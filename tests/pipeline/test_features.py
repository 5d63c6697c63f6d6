"""mmre_cli/pipeline/features.py: a chunk's progress moves per encoder batch and adds up to the chunk."""

from mmre_cli.pipeline.features import _ChunkProgress


def test_chunk_progress_adds_up_to_the_chunk():
    moved = []

    class Task:
        def advance(self, n):
            moved.append(n)

    p = _ChunkProgress(Task(), 10)
    p.phase(0.6, 3)
    for _ in range(3):
        p(1)
    p.phase(0.4, 4)
    p(2)
    p.finish()
    assert abs(sum(moved) - 10) < 1e-9 and len(moved) == 5 and abs(sum(moved[:3]) - 6) < 1e-9
