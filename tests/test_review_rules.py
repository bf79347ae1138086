"""The review server's two rules as properties: which Host is answered, which file is served."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from kling_pipe._review.server import MEDIA_TYPES, host_allowed, media_inside

ports = st.integers(min_value=1, max_value=65535)
#: Path pieces an attacker would try: parents, absolute roots, dots, encodings left as text.
pieces = st.sampled_from(
    [
        "..",
        ".",
        "",
        "/",
        "versions",
        "thumbs",
        "a.mp4",
        "b.jpg",
        "secret.txt",
        "link",
        "outside.mp4",
        "%2e%2e",
        "..\\..",
        "x.MP4",
    ]
)


@given(host=st.text(max_size=40), port=ports)
def test_only_loopback_names_of_the_port_are_answered(host, port):
    expected = host in (f"127.0.0.1:{port}", f"localhost:{port}")
    assert host_allowed(host, port) is expected


@given(port=ports, other=ports)
def test_another_port_is_another_host(port, other):
    assert host_allowed(f"127.0.0.1:{other}", port) is (port == other)


def folder_with_an_outside(base: Path) -> Path:
    """An output folder with media inside, media and a secret outside, and links out."""
    folder = base / "out"
    (folder / "versions").mkdir(parents=True, exist_ok=True)
    (folder / "thumbs").mkdir(exist_ok=True)
    for name in ("a.mp4", "versions/a.mp4", "thumbs/b.jpg", "secret.txt", "x.MP4"):
        (folder / name).write_bytes(b"inside")
    (base / "outside.mp4").write_bytes(b"outside")
    (base / "secret.txt").write_bytes(b"outside")
    for link, target in (("link", base), ("versions/link", base / "outside.mp4")):
        if not (folder / link).is_symlink():
            (folder / link).symlink_to(target)
    return folder


@given(parts=st.lists(pieces, min_size=1, max_size=6))
def test_a_served_file_is_a_picture_or_video_inside_the_folder_whatever_the_path(
    tmp_path_factory, parts
):
    base = tmp_path_factory.mktemp("review")
    folder = folder_with_an_outside(base)
    served = media_inside(folder, os.path.join(*parts))  # noqa: PTH118 - a URL's tail, as text
    if served is not None:
        assert served.is_relative_to(folder.resolve())
        assert served.suffix.lower() in MEDIA_TYPES
        assert served.read_bytes() == b"inside"


def test_media_inside_serves_the_folders_media_and_nothing_a_link_leads_out_to(tmp_path):
    folder = folder_with_an_outside(tmp_path)
    assert media_inside(folder, "versions/a.mp4") == (folder / "versions/a.mp4").resolve()
    assert media_inside(folder, "x.MP4") is not None
    for tail in (
        "versions/link",
        "link/outside.mp4",
        "../outside.mp4",
        str(tmp_path / "outside.mp4"),
        "secret.txt",
        "versions",
        "nothing.mp4",
    ):
        assert media_inside(folder, tail) is None, tail
