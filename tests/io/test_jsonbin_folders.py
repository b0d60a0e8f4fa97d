"""Folders of JSON+binref files as many trees (tensordb.io.jsonbin.folders)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from jsonbin_helpers import (
    BIN_BYTES,
    GOOD,
    array_object,
    assert_same,
    bad_array,
    case_folder,
    write_doc,
)

import tensordb
from tensordb.demo import synthetic_samples
from tensordb.io.jsonbin import ImportReport, export, import_folder


@pytest.mark.slow
def test_folder_of_synthetic_samples_dedups_geometry(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    total = geometry = 0
    unique: dict[bytes, int] = {}
    with tensordb.open(tmp_path / "src.tdb") as src:
        for name, sample in synthetic_samples(20, 10):
            src[name] = sample
            for mesh in sample["data"].values():
                for key, value in [*mesh.items(), *mesh["cell_data"].items(), *mesh["point_data"].items()]:
                    if isinstance(value, np.ndarray):
                        total += value.nbytes
                        if key in ("points", "cell_connectivity", "cell_types"):
                            geometry += value.nbytes
                        digest = hashlib.sha256(value.dtype.str.encode() + str(value.shape).encode()
                                                + value.tobytes()).digest()
                        unique[digest] = value.nbytes
            sim, step = name.rsplit("-", 2)[1:]
            (samples / sim).mkdir(parents=True, exist_ok=True)
            export(src[name], samples / sim / f"{step}.json")
        expected_names = [f"sim{s:03d}/step{t:03d}" for s in range(20) for t in range(10)]

        ticks: list[tuple[int, int, str]] = []
        with tensordb.open(tmp_path / "dst.tdb") as dst:
            report = import_folder(dst, samples, progress=lambda done, n, path: ticks.append((done, n, path)))
            assert isinstance(report, ImportReport)
            assert report.ok and report.failed == []
            assert sorted(report.imported) == expected_names and sorted(dst) == expected_names
            assert [t[:2] for t in ticks] == [(i, 200) for i in range(1, 201)]
            assert_same(dst["sim007/step004"].load(), src["bm01-sim007-step004"].load())

            stats = dst.stats()
            fields = total - geometry
            # geometry appears in 10 time steps of its simulation: stored about once per simulation
            bound = total / (fields + geometry / 10)
            assert stats["dedup_ratio"] >= bound * 0.999, (stats["dedup_ratio"], bound)
            # the fields differ at every step: they are never shared, whatever the chunking
            assert stats["dedup_ratio"] <= total / fields
            # distinct arrays by content, as the importer saw them (inlet and outlet even share geometry)
            assert bound <= total / sum(unique.values()) <= total / fields
            assert stats["logical_bytes"] == total
            assert dst.check().ok


# -- 3. rejections -------------------------------------------------------------------------


def test_import_folder_reports_bad_files_and_imports_the_rest(tmp_path: Path) -> None:
    folder = case_folder(tmp_path)
    (folder / "sub" / "deeper").mkdir()
    (folder / "sub" / "deeper" / "data.bin").write_bytes(BIN_BYTES)
    good = {"x": array_object(GOOD), "y": array_object(np.arange(4, dtype="i4"), "data.bin:0", "binref")}
    (folder / "a.json").write_text(json.dumps(good))
    (folder / "sub" / "deeper" / "c.json").write_text(json.dumps(good))
    (folder / "sub" / "broken.json").write_text("[1, 2")
    write_doc(folder / "outside.json", bad_array(data={"buffer": "../outside.bin:0"}), tmp_path / "outside.bin")
    write_doc(folder / "sub" / "short.json", bad_array(data={"buffer": "data.bin:250"}), tmp_path / "outside.bin")
    (folder / "notes.txt").write_text("not imported")
    ticks: list[tuple[int, int, str]] = []
    with tensordb.open(tmp_path / "a.tdb") as db:
        report = import_folder(db, folder, progress=lambda *a: ticks.append(a))
        assert not report.ok
        assert sorted(report.imported) == ["a", "sub/deeper/c"] and sorted(db) == ["a", "sub/deeper/c"]
        failed = dict(report.failed)
        assert sorted(failed) == sorted(str(folder / p) for p in ("outside.json", "sub/broken.json", "sub/short.json"))
        assert "invalid JSON" in failed[str(folder / "sub" / "broken.json")]
        assert "'..'" in failed[str(folder / "outside.json")]
        assert "ends before the array does" in failed[str(folder / "sub" / "short.json")]
        assert all(path in message for path, message in report.failed)
        assert [t[:2] for t in ticks] == [(i, 5) for i in range(1, 6)]
        assert sorted(t[2] for t in ticks) == sorted(str(p) for p in folder.rglob("*.json"))
        for name in report.imported:
            assert_same(db[name].load(), {"x": GOOD, "y": np.arange(4, dtype="i4")})
        assert db.check().ok

        only_top = import_folder(db, folder, pattern="*.json", replace=True)
        assert only_top.imported == ["a"] and [Path(p).name for p, _ in only_top.failed] == ["outside.json"]


# -- 4. export -----------------------------------------------------------------------------
