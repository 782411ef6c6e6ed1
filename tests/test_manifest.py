"""space/manifest.py: one manifest name, written last and atomically; atomic file replacement."""

import pytest

from space.manifest import MANIFEST_NAME, read_manifest, write_atomic, write_manifest


def test_manifest_round_trips_and_is_none_before_it_is_written(tmp_path):
    assert read_manifest(tmp_path) is None
    written = write_manifest(tmp_path, {"rows": 3, "path": tmp_path / "x"})
    assert read_manifest(tmp_path) == {"rows": 3, "path": str(tmp_path / "x")}  # non-JSON values as str
    assert written["rows"] == 3 and [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "data.bin"
    write_atomic(target, lambda handle: handle.write(b"old"))

    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_bytes() == b"old" and [p.name for p in target.parent.iterdir()] == ["data.bin"]


def test_models_checkpoints_and_stages_share_the_manifest_name():
    from space.train import checkpoint
    from space.models import smollm2, tiny
    from tasks import common

    assert checkpoint.MANIFEST == smollm2.MANIFEST_NAME == tiny.MANIFEST_NAME == common.MANIFEST == MANIFEST_NAME
