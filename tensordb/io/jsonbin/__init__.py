"""Import and export of the JSON+binref format.

A JSON file whose arrays are objects of the form::

    {"object_type": "array", "shape": [4778, 3], "dtype": "float32",
     "data": {"buffer": "...", "encoding": "base64" | "binref"}}

``base64`` buffers hold the raw bytes inline; ``binref`` buffers are
``"FILE.bin:OFFSET"`` pointers into a raw file beside the JSON file. Either
way the bytes are little-endian, C order, ``prod(shape) * itemsize`` long.
Every other JSON value (including dicts with another ``object_type``) is an
ordinary value and is stored as is, key order included.

Files are untrusted input: every array object of a file is validated
(dtype, shape, the size limits of :mod:`tensordb.limits`, encoding, base64
alphabet and length, binref file name confined to the JSON file's folder,
offsets and lengths against the file size) before anything is written, and
a file is imported in one transaction. Large arrays are streamed in
chunk-aligned blocks, never read whole.

The functions pair up as in :mod:`tensordb.interop.zarr`:
``import_(db, name, source)`` and ``export(value, target)``; a folder of
files is many trees (:func:`import_folder`, :func:`export_folder`). This
package uses only tensordb's public API.

Modules: ``format`` (array objects, dtype names, byte layout), ``checks``
(validating a file), ``reader`` (one file in), ``writer`` (one file out),
``names`` (tree names and the checks before writing), ``folders`` (folders of
files).

Example
-------
>>> import tensordb, tensordb.io.jsonbin as jsonbin
>>> db = tensordb.open("runs.tdb")
>>> jsonbin.import_(db, "sample037", "sample037.json")
'sample037'
>>> report = jsonbin.import_folder(db, "samples/")
>>> report.ok, len(report.imported)
(True, 200)
>>> jsonbin.export(db["sample037"], "out/sample037.json")   # writes out/sample037.json and out/sample037.bin
"""

from __future__ import annotations

from .folders import ImportReport, export_folder, folder_files, import_folder
from .names import refuse_clashes, refuse_existing
from .reader import import_
from .writer import export

__all__ = [
    "import_", "export", "import_folder", "export_folder", "folder_files", "refuse_existing", "refuse_clashes",
    "ImportReport",
]
