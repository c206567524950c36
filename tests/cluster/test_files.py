"""Output files shipped from a worker and placed under the server's output/: counters, renames, confinement."""
from __future__ import annotations

import threading
from pathlib import Path

from app.cluster.files import OutputPlacer, ShippedFile, files_under, read_files, refs_in


def test_refs_in_finds_output_and_temp_files_only() -> None:
    ui = {"images": [{"filename": "a_00001_.png", "subfolder": "s", "type": "output"},
                     {"filename": "b.png", "subfolder": "", "type": "temp"},
                     {"filename": "c.png", "subfolder": "", "type": "input"}], "text": ["hello"]}
    assert refs_in(ui) == [("output", "s", "a_00001_.png"), ("temp", "", "b.png")]
    assert refs_in(None) == []


def test_worker_files_round_trip_with_next_free_counter(tmp_path: Path) -> None:
    worker = {"output": tmp_path / "w" / "output", "temp": tmp_path / "w" / "temp"}
    (worker["output"] / "sub").mkdir(parents=True)
    (worker["output"] / "sub" / "img_00001_.png").write_bytes(b"one")
    (worker["output"] / "sub" / "img_00002_.png").write_bytes(b"two")
    (worker["output"] / "extra.txt").write_bytes(b"x")
    shipped = read_files([("output", "sub", "img_00001_.png"), ("output", "sub", "img_00002_.png")], worker)
    server = {"output": tmp_path / "s" / "output", "temp": tmp_path / "s" / "temp"}
    (server["output"] / "sub").mkdir(parents=True)
    (server["output"] / "sub" / "img_00001_.png").write_bytes(b"older")
    placer = OutputPlacer(server, threading.Lock())
    placer.place(shipped)
    assert (server["output"] / "sub" / "img_00001_.png").read_bytes() == b"older"  # never overwritten
    assert (server["output"] / "sub" / "img_00002_.png").read_bytes() == b"one"
    assert (server["output"] / "sub" / "img_00003_.png").read_bytes() == b"two"
    event = {"node": "9", "output": {"images": [{"filename": "img_00001_.png", "subfolder": "sub", "type": "output"},
                                                {"filename": "img_00002_.png", "subfolder": "sub", "type": "output"}]}}
    names = [i["filename"] for i in placer.rewrite(event)["output"]["images"]]
    assert names == ["img_00002_.png", "img_00003_.png"]
    left = files_under(worker, {("output", "sub", "img_00001_.png"), ("output", "sub", "img_00002_.png")})
    assert [(f.subfolder, f.filename) for f in left] == [("", "extra.txt")]


def test_escaping_paths_are_refused(tmp_path: Path) -> None:
    server = {"output": tmp_path / "out"}
    server["output"].mkdir()
    OutputPlacer(server, threading.Lock()).place([ShippedFile("output", "../..", "evil.png", b"x")])
    assert not (tmp_path.parent / "evil.png").exists()
    assert read_files([("output", "..", "x")], server) == []
