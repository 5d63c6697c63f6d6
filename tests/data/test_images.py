"""ImageResolver: ids cannot leave the image folder, by path or by link."""

from __future__ import annotations

import os

import pytest

from mmre_cli.data.images import ImageResolver
from mmre_cli.data.mnre import RecordError


@pytest.fixture
def folders(tmp_path, make_image):
    root = tmp_path / "data" / "img_org" / "train"
    make_image(root / "inside.png")
    outside = tmp_path / "secret"
    make_image(outside / "x.png")
    return root, outside


@pytest.mark.parametrize("img_id", ["../secret.png", "/etc/passwd", "a/../../b.png", "~/x.png", "a\x00.png"])
def test_paths_that_leave_the_folder_are_refused(folders, img_id):
    with pytest.raises(RecordError):
        ImageResolver(folders[0]).resolve(img_id)


def test_a_symlink_out_of_the_folder_is_refused_one_inside_is_kept(folders, tmp_path):
    root, outside = folders
    os.symlink(outside / "x.png", root / "escape.png")
    os.symlink(outside, root / "linked_dir")
    os.symlink(root / "inside.png", root / "alias.png")
    resolver = ImageResolver(root, verify=True)
    for img_id in ("escape.png", "linked_dir/x.png"):
        with pytest.raises(RecordError, match="outside the image folder"):
            resolver.resolve(img_id)
    assert resolver.resolve("alias.png").status == "ok"
    assert resolver.resolve("inside.png").status == "ok"


def test_a_symlink_into_a_dvc_cache_is_followed(folders, tmp_path, make_image):
    root, _ = folders
    cached = tmp_path / "project" / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef"
    make_image(cached)
    os.symlink(cached, root / "from_cache.png")
    assert ImageResolver(root, verify=True).resolve("from_cache.png").status == "ok"
