"""import and export: JSON+binref files and folders, Zarr v3 folders, refusals, Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensordb
from cli.helpers import (
    FIELD,
    FIXTURE,
    FIXTURE_TREE,
    NOISY,
    POINTS,
    array_object,
    cli,
    fails,
    ok,
    run,
    state,
    write_sample,
)


def test_import_a_file_with_a_name(tmp_path: Path) -> None:
    db = tmp_path / "i.tdb"
    src = write_sample(tmp_path / "in", "step000", 7)
    assert ok("import", db, src, "--name", "first").stdout.strip() == f"imported 'first' into {db}"
    assert ok("import", db, src).stdout.strip() == f"imported 'step000' into {db}"
    with tensordb.open(db, mode="r") as database:
        assert sorted(database) == ["first", "step000"]
        tree = database["first"]
        assert tree["time"] == 7 and tree["/mesh/object_type"] == "PasteurSurfaceMesh"
        np.testing.assert_array_equal(tree["/mesh/points"][...], POINTS + 7)
        np.testing.assert_array_equal(tree["/mesh/types"][...], np.full(4, 7, "i4"))


def test_import_of_a_bad_file_fails_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "i.tdb"
    src = write_sample(tmp_path / "in", "bad", 1, binref="bad.bin:5000")  # past the end of bad.bin
    error = fails("import", db, src)
    assert error.startswith(f"Error: {src}: /mesh/points: ") and "past the end of bad.bin" in error
    with tensordb.open(db, mode="r") as database:
        assert len(database) == 0
    broken = tmp_path / "in" / "broken.json"
    broken.write_text('{"a": [1, 2')
    assert fails("import", db, broken).startswith(f"Error: {broken}: invalid JSON")
    outside = write_sample(tmp_path / "in", "outside", 1, binref="../secret.bin:0")
    assert "'..'" in fails("import", db, outside)
    with tensordb.open(db, mode="r") as database:
        assert len(database) == 0


def test_import_a_folder_with_good_and_bad_files(tmp_path: Path) -> None:
    db = tmp_path / "i.tdb"
    folder = tmp_path / "runs"
    write_sample(folder / "sim01", "step000", 0)
    write_sample(folder / "sim01", "step001", 1)
    bad = write_sample(folder / "sim02", "step000", 2, binref="step000.bin:1000000")
    broken = folder / "broken.json"
    broken.write_text("{nope")
    (folder / "notes.txt").write_text("not imported: the pattern is **/*.json")
    result = run("import", db, folder)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stdout.strip() == f"imported 2 of 4 file(s) into {db}"
    errors = result.stderr.strip().splitlines()
    assert errors[-1] == "Error: 2 of 4 file(s) failed to import (see above)"
    failed = errors[:-1]
    assert len(failed) == 2
    assert failed[0].startswith(f"failed: {broken}: invalid JSON")
    assert failed[1].startswith(f"failed: {bad}: /mesh/points: ")
    with tensordb.open(db, mode="r") as database:
        assert sorted(database) == ["sim01/step000", "sim01/step001"]
        np.testing.assert_array_equal(database["sim01/step001"]["/mesh/points"][...], POINTS + 1)
    # tree names with "/" resolve as addresses
    assert json.loads(ok("show", db, "sim01/step001/time").stdout) == 1


def test_import_pattern_and_argument_errors(tmp_path: Path) -> None:
    db = tmp_path / "i.tdb"
    folder = tmp_path / "runs"
    write_sample(folder / "sim01", "step000", 0)
    write_sample(folder / "sim02", "step000", 2)
    result = ok("import", db, folder, "--pattern", "sim02/*.json")
    assert result.stdout.strip() == f"imported 1 of 1 file(s) into {db}"
    with tensordb.open(db, mode="r") as database:
        assert list(database) == ["sim02/step000"]
    assert fails("import", db, folder, "--name", "x", code=2) == (
        "Error: --name applies to a single file or Zarr folder, not to folders or several files")
    assert fails("import", db, folder, "--replace", "--skip-existing", code=2) == (
        "Error: --replace and --skip-existing exclude each other")
    missing = tmp_path / "nothing.json"
    assert fails("import", db, missing) == f"Error: {missing}: no such file or folder"
    assert "Missing argument 'SRC...'" in fails("import", db, code=2)
    for pattern in ("", "**a", "/abs"):  # what pathlib's glob refuses is a bad --pattern, not a bug
        error = fails("import", db, folder, "--pattern", pattern, code=2)
        assert error.startswith(f"Error: Invalid value for '--pattern': {pattern!r}: "), error


def test_export_round_trips_through_import(tmp_path: Path) -> None:
    db = tmp_path / "e.tdb"
    ok("import", db, write_sample(tmp_path / "in", "s", 3))
    out = tmp_path / "out" / "s.json"
    out.parent.mkdir()
    assert ok("export", db, "s", out).stdout.strip() == f"exported s to {out}"
    doc = json.loads(out.read_text())
    assert doc["mesh"]["types"]["data"]["encoding"] == "base64"  # 16 bytes: inline
    assert doc["mesh"]["points"]["data"] == {"buffer": "s.bin:0", "encoding": "binref"}
    assert (tmp_path / "out" / "s.bin").read_bytes() == (POINTS + 3).tobytes()
    ok("import", db, out, "--name", "again")
    with tensordb.open(db, mode="r") as database:
        assert database["again"]["/time"] == 3
        np.testing.assert_array_equal(database["again"]["/mesh/points"][...], POINTS + 3)
    sub = tmp_path / "out" / "mesh.json"
    ok("export", db, "s/mesh", sub, "--inline-below", "100000")
    mesh = json.loads(sub.read_text())
    assert mesh["object_type"] == "PasteurSurfaceMesh" and mesh["points"]["data"]["encoding"] == "base64"
    assert not (tmp_path / "out" / "mesh.bin").exists()


def test_export_errors(tmp_path: Path, sample: Path) -> None:
    out = tmp_path / "x.json"
    assert fails("export", sample, "nope", out) == f"Error: {sample}: no tree named 'nope'"
    assert fails("export", sample, "s1/nothing", out) == f"Error: {sample}: s1: /nothing: no such path"
    assert "'--inline-below': -1 is not in the range" in fails("export", sample, "s1", out, "--inline-below", "-1",
                                                             code=2)
    assert not out.exists()


def test_export_to_zarr_and_import_the_folder_back(tmp_path: Path, sample: Path) -> None:
    zarr = pytest.importorskip("zarr")
    out = tmp_path / "s1.zarr"
    assert ok("export", sample, "s1", out, "--format", "zarr").stdout.strip() == f"exported s1 to {out}"
    root = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(root["data"]["points"][...], POINTS)
    assert root["data"]["points"].chunks == (16, 3)
    assert root.attrs["time"] == 51
    assert root["data"].attrs["l"] == [1, 2.5, None, True]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    ok("export", sample, "sim01/step003/data", tmp_path / "sub.zarr")  # the format follows the .zarr suffix
    assert (tmp_path / "sub.zarr" / "zarr.json").is_file()

    db = tmp_path / "z.tdb"
    assert ok("import", db, out).stdout.strip() == f"imported 's1' into {db}"
    assert ok("import", db, tmp_path / "sub.zarr", "--name", "p").stdout.strip() == f"imported 'p' into {db}"
    folder = tmp_path / "runs"
    write_sample(folder, "step000", 4)
    result = ok("import", db, folder, out, "--replace")  # a JSON folder and a Zarr folder together
    assert result.stdout.strip() == f"imported 2 of 2 file(s) into {db}"
    with tensordb.open(db, mode="r") as database, tensordb.open(sample, mode="r") as original:
        assert sorted(database) == ["p", "s1", "step000"]
        expected = original["s1"].load()
        for key in ("name", "time", "z"):
            assert repr(database["s1"][key]) == repr(expected[key])
        loaded = database["s1"].load()
        assert list(loaded) == list(expected) and list(loaded["data"]) == list(expected["data"])
        np.testing.assert_array_equal(loaded["data"]["noisy"], NOISY)
        np.testing.assert_array_equal(database["p"]["p"][...], FIELD)


def test_zarr_export_and_import_errors(tmp_path: Path, sample: Path) -> None:
    pytest.importorskip("zarr")
    out = tmp_path / "s1.zarr"
    out.mkdir()
    assert fails("export", sample, "s1", out) == f"Error: {out}: already exists; remove it or choose another name"
    missing = tmp_path / "nowhere" / "x.zarr"
    assert fails("export", sample, "s1", missing).startswith(f"Error: {missing}: folder ")
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": '
                                   '{"tensordb": {"kind": "dict", "keys": ["x"]}}}')
    db = tmp_path / "z.tdb"
    assert fails("import", db, bad) == (f"Error: {bad}: /: key 'x' is neither a member nor an attribute "
                                        "(looked for 'x')")
    with tensordb.open(db, mode="r") as database:
        assert len(database) == 0


def test_without_the_zarr_extra_zarr_commands_say_what_to_install(tmp_path: Path, sample: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zarr", None)  # "import zarr" raises ImportError
    expected = "Error: tensordb.zarr needs zarr 3.1 or later: pip install 'tensordb[zarr]'"
    out = tmp_path / "s1.zarr"
    assert fails("export", sample, "s1", out) == expected
    assert [p.name for p in tmp_path.iterdir() if "zarr" in p.name] == []  # no temporary folder left
    folder = tmp_path / "in.zarr"
    folder.mkdir()
    (folder / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    db = tmp_path / "z.tdb"
    assert fails("import", db, folder) == expected
    json_file = write_sample(tmp_path / "in", "step000", 0)
    result = run("import", db, folder, json_file)  # several sources: the others are imported
    assert result.exit_code == 1 and f"failed: {folder}: tensordb.zarr needs zarr 3.1" in result.stderr
    with tensordb.open(db, mode="r") as database:
        assert list(database) == ["step000"]


def test_fixture_import_export_keeps_structure_and_values(tmp_path: Path) -> None:
    db = tmp_path / "f.tdb"
    ok("import", db, FIXTURE)
    out = tmp_path / "back.json"
    ok("export", db, FIXTURE_TREE, out)
    original = json.loads((FIXTURE / f"{FIXTURE_TREE}.json").read_text())
    exported = json.loads(out.read_text())

    def shape(doc: Any) -> Any:  # the structure, with arrays as (shape, dtype)
        if isinstance(doc, dict) and doc.get("object_type") == "array":
            return ("array", tuple(doc["shape"]), doc["dtype"])
        if isinstance(doc, dict):
            return {k: shape(v) for k, v in doc.items()}
        return [shape(v) for v in doc] if isinstance(doc, list) else doc

    assert shape(exported) == shape(original)
    ok("import", db, out, "--name", "back")
    with tensordb.open(db, mode="r") as database:
        for _, path, array in database.glob("/**", trees=FIXTURE_TREE):
            if isinstance(array, tensordb.Array):
                np.testing.assert_array_equal(database["back"][path][...], array[...])


def _two_simulations(root: Path) -> Path:
    for sim in ("sim00", "sim01"):
        for step in range(3):
            write_sample(root / sim, f"step00{step}", 10 * int(sim[-1]) + step)
    return root


def test_sources_whose_tree_names_collide_are_refused(tmp_path: Path) -> None:  # bug 1
    root = _two_simulations(tmp_path / "samples")
    db = tmp_path / "g.tdb"
    ok("import", db, root / "sim00" / "step000.json", "--name", "kept")
    before = state(db)
    files = sorted(str(p) for p in root.glob("sim0*/step00*.json"))
    message = fails("import", db, *files)
    assert "several sources would write the same tree, nothing was imported" in message
    for step in ("step000", "step001", "step002"):
        assert f"'{step}' (from {root / 'sim00' / step}.json and {root / 'sim01' / step}.json)" in message
    assert fails("import", db, root / "sim00", root / "sim01").startswith(f"Error: {db}: several sources")
    assert fails("import", db, root / "sim00", root / "sim01", "--replace").startswith(f"Error: {db}: several")
    assert state(db) == before
    fresh = tmp_path / "fresh.tdb"
    assert fails("import", fresh, root / "sim00", root / "sim01").startswith(f"Error: {fresh}: several")
    assert not fresh.exists()  # a refused import does not even create the database
    assert ok("import", db, root).stdout.strip() == f"imported 6 of 6 file(s) into {db}"  # the parent keeps paths
    ok("import", db, root / "sim01", "--prefix", "again/")
    with tensordb.open(db, mode="r") as database:
        assert sorted(database) == [*(f"again/step00{i}" for i in range(3)), "kept",
                                    *(f"{sim}/step00{i}" for sim in ("sim00", "sim01") for i in range(3))]
        assert database["again/step002"]["time"] == 12


def test_import_refuses_an_existing_tree_unless_told(tmp_path: Path) -> None:  # bug 2
    root = _two_simulations(tmp_path / "samples")
    db = tmp_path / "g.tdb"
    ok("import", db, root / "sim00")
    with tensordb.open(db) as database:
        database["step001"]["time"] = -1  # a change the user made after the import
    before = state(db)
    message = fails("import", db, root / "sim00" / "step001.json")
    assert message == (f"Error: {db}: 1 tree(s) exist already, nothing was imported: 'step001'; pass --replace or "
                       "--skip-existing (replace=True or skip_existing=True in Python)")
    assert "'step000', 'step001', 'step002'" in fails("import", db, root / "sim00")
    assert state(db) == before

    result = ok("import", db, root / "sim00", "--skip-existing")
    assert result.stdout.strip() == f"imported 0 of 0 file(s) into {db}, kept 3 existing tree(s)"
    assert state(db) == before
    (root / "sim00" / "step003.json").write_text((root / "sim00" / "step000.json").read_text())
    (root / "sim00" / "step003.bin").write_bytes((root / "sim00" / "step000.bin").read_bytes())
    result = ok("import", db, root / "sim00", "--skip-existing")  # resumes: only what is missing
    assert result.stdout.strip() == f"imported 1 of 1 file(s) into {db}, kept 3 existing tree(s)"

    assert ok("import", db, root / "sim00" / "step001.json", "--replace").stdout.strip() == (
        f"imported 'step001' into {db}")
    with tensordb.open(db, mode="r") as database:
        assert database["step001"]["time"] == 1 and database.check().ok


def test_python_import_refuses_an_existing_tree_unless_told(tmp_path: Path) -> None:  # bug 2, in Python
    from tensordb.jsonbin import import_file, import_folder

    root = _two_simulations(tmp_path / "samples")
    with tensordb.open(tmp_path / "g.tdb") as database:
        import_file(database, root / "sim00" / "step000.json")
        database["step000"]["time"] = -1
        with pytest.raises(tensordb.TreeExistsError, match="'step000'"):
            import_file(database, root / "sim00" / "step000.json")
        with pytest.raises(tensordb.TreeExistsError, match="'step000'"):
            import_folder(database, root / "sim00")
        assert list(database) == ["step000"] and database["step000"]["time"] == -1
        assert import_file(database, root / "sim00" / "step000.json", skip_existing=True) == "step000"
        assert database["step000"]["time"] == -1
        report = import_folder(database, root / "sim00", skip_existing=True)
        assert report.ok and report.skipped == ["step000"] and report.imported == ["step001", "step002"]
        import_file(database, root / "sim00" / "step000.json", replace=True)
        assert database["step000"]["time"] == 0
        with pytest.raises(ValueError, match="exclude each other"):
            import_folder(database, root / "sim00", replace=True, skip_existing=True)
        assert database.check().ok


def test_export_into_an_existing_folder(tmp_path: Path, sample: Path) -> None:  # bug 4
    out = tmp_path / "out"
    out.mkdir()
    before = state(sample)
    assert ok("export", sample, "s1", out).stdout.strip() == f"exported 1 tree(s) into {out}"
    assert sorted(p.name for p in out.iterdir()) == ["s1.bin", "s1.json"]
    assert ok("export", sample, "sim01/step003", f"{out}/").stdout.strip() == f"exported 1 tree(s) into {out}/"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "s1.bin", "s1.json", "sim01", "sim01/step003.json"]  # FIELD is small: inline, no .bin
    assert state(sample) == before
    back = tmp_path / "back.tdb"
    ok("import", back, out)
    with tensordb.open(back, mode="r") as database:
        assert sorted(database) == ["s1", "sim01/step003"]
        np.testing.assert_array_equal(database["sim01/step003"]["/data/p"][...], FIELD)


def test_export_into_a_missing_folder_names_the_users_path(tmp_path: Path, sample: Path) -> None:  # bug 5
    target = tmp_path / "newdir" / "x.json"
    assert fails("export", sample, "s1", target) == f"Error: {target}: folder {target.parent} does not exist"
    assert not (tmp_path / "newdir").exists()
    deeper = tmp_path / "no" / "such" / "dir" / ""
    assert fails("export", sample, "s1", "sim01", deeper).startswith(f"Error: {deeper}")
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("s.tdb")] == []  # nothing left behind


def test_export_refuses_to_overwrite_files_unless_forced(tmp_path: Path, sample: Path) -> None:  # bug 6
    source = write_sample(tmp_path / "in", "s1", 5)  # the very files a user imported from
    originals = {p.name: p.read_bytes() for p in source.parent.iterdir()}
    before = state(sample)
    assert fails("export", sample, "s1", source, "--inline-below", "0") == (
        f"Error: {source}: s1.json and s1.bin already exist; pass --force (force=True in Python) to overwrite")
    (source.parent / "s1.bin").unlink()
    assert fails("export", sample, "s1", source).endswith("s1.json already exists; pass --force (force=True in "
                                                          "Python) to overwrite")
    (source.parent / "s1.bin").write_bytes(originals["s1.bin"])
    assert fails("export", sample, "s1", "sim01", source.parent).startswith(f"Error: {source}: s1.json and s1.bin")
    assert {p.name: p.read_bytes() for p in source.parent.iterdir()} == originals
    assert state(sample) == before
    ok("export", sample, "s1", source, "--force", "--inline-below", "0")
    assert json.loads(source.read_text())["time"] == 51
    assert (source.parent / "s1.bin").read_bytes() != originals["s1.bin"]


def test_python_export_refuses_to_overwrite_unless_forced(tmp_path: Path, sample: Path) -> None:  # bug 6
    from tensordb.jsonbin import export_tree, export_trees

    out = tmp_path / "x.json"
    out.write_text("mine")
    with tensordb.open(sample, mode="r") as database:
        with pytest.raises(FileExistsError, match="x.json already exists"):
            export_tree(database["s1"], out)
        with pytest.raises(IsADirectoryError, match="is a folder"):
            export_tree(database["s1"], tmp_path)
        assert out.read_text() == "mine"
        export_tree(database["s1"], out, force=True)
        assert json.loads(out.read_text())["time"] == 51
        folder = tmp_path / "all"
        folder.mkdir()
        written = export_trees(database, list(database), folder, inline_below=0)
        assert sorted(Path(w).relative_to(folder).as_posix() for w in written) == [
            "geom.json", "s1.json", "sim01.json", "sim01/step003.json"]
        with pytest.raises(FileExistsError, match="already exist"):
            export_trees(database, ["geom"], folder)
        with pytest.raises(tensordb.PathNotFoundError, match="nope"):
            export_trees(database, ["s1", "nope"], tmp_path / "all")


def test_export_of_trees_with_unsafe_names_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "u.tdb"
    with tensordb.open(db) as database:
        database["ok"] = {"x": 1}
        database["../escape"] = {"x": 2}
    out = tmp_path / "out"
    message = fails("export", db, "--all", out)
    assert "'../escape' cannot become a file path" in message
    assert not out.exists() and not (tmp_path / "escape.json").exists()


def test_a_failed_folder_export_leaves_nothing_behind(tmp_path: Path, sample: Path) -> None:
    with tensordb.open(sample) as db:
        db["z/blob"] = {"raw": b"bytes have no JSON form"}  # exported last: fails after the others were written
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    message = fails("export", sample, "--all", out)
    assert message == f"Error: {out / 'z' / 'blob.json'}: /raw: a bytes cannot be expressed in JSON"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["mine.txt"]


def test_export_of_a_prefix_and_of_everything(tmp_path: Path, sample: Path) -> None:
    out = tmp_path / "everything"
    assert ok("export", sample, "--all", out).stdout.strip() == f"exported 4 tree(s) into {out}"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "geom.json", "s1.json", "sim01.json", "sim01/step003.json"]
    part = tmp_path / "part"
    assert ok("export", sample, "sim01/", part).stdout.strip() == f"exported 1 tree(s) into {part}"
    assert [p.relative_to(part).as_posix() for p in part.rglob("*.json")] == ["sim01/step003.json"]
    assert fails("export", sample, "nothing/", tmp_path / "x") == f"Error: {sample}: no tree under 'nothing/'"
    assert "give ADDRESS... or --all, not both" in fails("export", sample, "s1", "--all", out, code=2)
    assert "--format zarr exports one ADDRESS" in fails("export", sample, "s1", "geom", out, "--format", "zarr",
                                                        code=2)
    assert not (tmp_path / "x").exists()


def test_ctrl_c_during_an_import_exits_130_and_the_import_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    rng = np.random.default_rng(3)
    n_files = 30
    for i in range(n_files):
        (folder / f"sim{i % 3}").mkdir(parents=True, exist_ok=True)
        data = rng.random(250_000)  # 2 MB each: the import takes a while
        (folder / f"sim{i % 3}" / f"step{i:03d}.bin").write_bytes(data.tobytes())
        doc = {"time": i, "p": array_object(data, f"step{i:03d}.bin:0")}
        (folder / f"sim{i % 3}" / f"step{i:03d}.json").write_text(json.dumps(doc))
    db = tmp_path / "i.tdb"
    process = subprocess.Popen([sys.executable, "-m", "tensordb", "import", str(db), str(folder)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some files are committed
        try:
            with tensordb.open(db, mode="r") as database:
                if len(database) >= 2:
                    break
        except (tensordb.TensorDBError, OSError):  # not created yet
            pass
        time.sleep(0.05)
    err = _interrupt(process, "import")
    message = err.strip().splitlines()[-1]
    match = re.fullmatch(rf"interrupted: (\d+) of {n_files} file\(s\) were imported into {re.escape(str(db))} and "
                         r"stay; the file being imported was rolled back\. Run the same command with "
                         r"--skip-existing to import the rest\.", message)
    assert match, err
    with tensordb.open(db, mode="r") as database:
        assert len(database) == int(match.group(1)) and database.check().ok
    resumed = cli("import", db, folder, "--skip-existing")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == (f"imported {n_files - int(match.group(1))} of {n_files - int(match.group(1))} "
                                      f"file(s) into {db}, kept {match.group(1)} existing tree(s)")
    with tensordb.open(db, mode="r") as database:
        assert len(database) == n_files and database.check().ok
        assert database.gc(dry_run=True)["arrays_removed"] == 0  # resuming imported nothing twice
        np.testing.assert_array_equal(database["sim1/step004"]["/p"][...], np.frombuffer(
            (folder / "sim1" / "step004.bin").read_bytes(), dtype="f8"))


def _interrupt(process: subprocess.Popen[str], command: str) -> str:
    """Send Ctrl-C to a running command; its stderr once it exited 130 (a skip if it finished first)."""
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip(f"the {command} finished before the interrupt arrived")
    assert process.returncode == 130, (out, err)
    return err


def test_ctrl_c_during_an_export_exits_130_and_leaves_only_whole_files(tmp_path: Path) -> None:
    db = tmp_path / "e.tdb"
    rng = np.random.default_rng(4)
    n_trees = 40
    with tensordb.open(db) as database, database.transaction():
        for i in range(n_trees):
            database[f"sim{i % 4}/step{i:03d}"] = {"time": i, "p": rng.random(200_000)}
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "tensordb", "export", str(db), "--all", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.is_dir() and any(out.rglob("*.json"))):
        time.sleep(0.01)
    err = _interrupt(process, "export")
    match = re.fullmatch(rf"interrupted: (\d+) of {n_trees} tree\(s\) were exported into {re.escape(str(out))} and "
                         r"stay; the file being written was removed\. Run the same command with --force to export "
                         r"them all\.", err.strip().splitlines()[-1])
    assert match, err
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert not any(name.endswith(".tmp") or "/." in name or name.startswith(".") for name in files), files
    done = int(match.group(1))
    assert len([f for f in files if f.endswith(".json")]) == done
    for json_file in out.rglob("*.json"):  # every file left is whole
        name = json_file.relative_to(out).with_suffix("").as_posix()
        assert json.loads(json_file.read_text())["time"] == int(name[-3:])
    with tensordb.open(db, mode="r") as database:
        assert len(database) == n_trees and database.check().ok
